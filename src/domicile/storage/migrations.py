"""Versioned schema migrations: numbered SQL files applied once, in order, per component.

A component keeps its scripts in ``<package>/migrations/<dialect>/NNNN_name.sql``.
Applied versions are recorded in ``schema_migrations``; a database whose recorded
version is newer than the newest script is refused (the code is older than the data).
Statements in a script are separated by a line that ends with ``;``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from domicile.errors import DomicileError, MigrationError
from domicile.storage.database import Database

_SCRIPT = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_TRACK_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
    " PRIMARY KEY (component, version))"
)

# A transaction-scoped advisory lock per schema (its name hashed), in a key space of
# its own (the first number) so no other use of advisory locks can collide with it.
_PG_LOCK = "SELECT pg_advisory_xact_lock(1685025127, hashtext(current_schema()))"


@dataclass(frozen=True)
class Migration:
    """One numbered SQL script."""

    version: int
    name: str
    sql: str


def load_migrations(package: str, dialect: str) -> list[Migration]:
    """Read the numbered scripts of `package`/migrations/`dialect`, in order."""
    folder = resources.files(package).joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _SCRIPT.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations of `{package}` are not numbered 1..n: {versions}")
    return found


def migrate(db: Database, component: str, package: str) -> int:
    """Apply the missing migrations of `component`; return the schema version now in force."""
    scripts = load_migrations(package, db.dialect)
    latest = scripts[-1].version if scripts else 0
    try:
        with db.transaction() as tx:
            if db.dialect == "postgres":
                # Processes starting at once on a fresh schema would each create its
                # tables, and PostgreSQL refuses all but the first CREATE TABLE of a
                # name. The lock, held to the end of this transaction, makes the others
                # wait and then find the scripts applied (SQLite: BEGIN IMMEDIATE).
                tx.execute(_PG_LOCK)
            tx.execute(_TRACK_TABLE)
            rows = tx.execute(
                "SELECT version FROM schema_migrations WHERE component = ?", (component,)
            ).fetchall()
            applied = {int(r[0]) for r in rows}
            newest = max(applied, default=0)
            if newest > latest:
                raise MigrationError(
                    f"`{component}` schema is at version {newest}, newer than this code ({latest})"
                )
            for script in scripts:
                if script.version in applied:
                    continue
                for statement in _statements(script.sql):
                    tx.execute(statement)
                tx.execute(
                    "INSERT INTO schema_migrations (component, version, name) VALUES (?, ?, ?)",
                    (component, script.version, script.name),
                )
    except MigrationError:
        raise
    except DomicileError as exc:
        raise MigrationError(f"migrating `{component}` failed: {exc}") from exc
    return latest


def _statements(script: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.lstrip().startswith("--"):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(current).strip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        out.append(tail)
    return out
