"""Principals and their tokens; a token is stored only as its SHA-256 hash.

Tokens are 256 random bits, so a plain hash (no slow KDF) is enough: nothing can be
guessed from it, and lookups stay one indexed read per request.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from domicile.errors import AuthenticationError, Conflict, InvalidInput, PrincipalNotFound
from domicile.storage.database import Database, Tx
from domicile.storage.migrations import migrate

TOKEN_PREFIX = "dom_"  # noqa: S105 - a public prefix, not a secret
ROLES = frozenset({"admin", "service", "officer", "analyst", "engineer", "support", "approver"})
_TOKEN = re.compile(r"^dom_[A-Za-z0-9_-]{43}$")
_PRINCIPAL_ID = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """A service or an employee, with the attributes decisions look at."""

    id: str
    entity: str
    country: str
    roles: frozenset[str]
    created_at: str
    revoked_at: str | None = None

    @property
    def is_revoked(self) -> bool:
        """True once the principal was revoked."""
        return self.revoked_at is not None


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row_to_principal(row: tuple[object, ...]) -> Principal:
    return Principal(
        id=str(row[0]),
        entity=str(row[1]),
        country=str(row[2]),
        roles=frozenset(str(row[3]).split(",")) - {""},
        created_at=str(row[4]),
        revoked_at=None if row[5] is None else str(row[5]),
    )


class PrincipalStore:
    """Principals and tokens in a control database (SQLite file or PostgreSQL schema)."""

    _COLUMNS = "id, entity, country, roles, created_at, revoked_at"

    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db, "principals", "domicile.principals")

    def add(self, principal_id: str, entity: str, country: str, roles: set[str]) -> str:
        """Create a principal and return its first token (shown once, never stored)."""
        if not _PRINCIPAL_ID.match(principal_id):
            raise InvalidInput(
                f"principal id `{principal_id}` must be lowercase letters, digits and ._@-"
            )
        unknown = roles - ROLES
        if not roles or unknown:
            raise InvalidInput(
                f"roles must be some of {', '.join(sorted(ROLES))}; got `{','.join(sorted(roles))}`"
            )
        if not entity.strip():
            raise InvalidInput("entity must not be empty")
        with self.db.transaction() as tx:
            if tx.execute("SELECT 1 FROM principals WHERE id = ?", (principal_id,)).fetchone():
                raise Conflict(f"principal `{principal_id}` exists already")
            tx.execute(
                f"INSERT INTO principals ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
                (principal_id, entity.strip(), country, ",".join(sorted(roles)), _now()),
            )
        return self.issue_token(principal_id)

    def issue_token(self, principal_id: str) -> str:
        """Issue another token for an active principal."""
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()[:43]
        with self.db.transaction() as tx:
            principal = self._get(tx, principal_id)
            if principal.is_revoked:
                raise Conflict(f"principal `{principal_id}` is revoked")
            tx.execute(
                "INSERT INTO tokens (token_hash, principal_id, created_at) VALUES (?, ?, ?)",
                (hash_token(token), principal_id, _now()),
            )
        return token

    def _get(self, tx: Tx, principal_id: str) -> Principal:
        row = tx.execute(
            f"SELECT {self._COLUMNS} FROM principals WHERE id = ?", (principal_id,)
        ).fetchone()
        if row is None:
            raise PrincipalNotFound(f"no principal `{principal_id}`")
        return _row_to_principal(row)

    def get(self, principal_id: str) -> Principal:
        """Return a principal by id."""
        with self.db.transaction(write=False) as tx:
            return self._get(tx, principal_id)

    def list(self) -> list[Principal]:
        """Every principal, revoked ones included, by id."""
        with self.db.transaction(write=False) as tx:
            rows = tx.execute(f"SELECT {self._COLUMNS} FROM principals ORDER BY id").fetchall()
        return [_row_to_principal(r) for r in rows]

    def revoke(self, principal_id: str) -> None:
        """Revoke a principal and every token it holds, at once."""
        now = _now()
        with self.db.transaction() as tx:
            self._get(tx, principal_id)
            tx.execute(
                "UPDATE principals SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, principal_id),
            )
            tx.execute(
                "UPDATE tokens SET revoked_at = ? WHERE principal_id = ? AND revoked_at IS NULL",
                (now, principal_id),
            )

    def authenticate(self, token: str) -> Principal:
        """Return the principal holding `token`; AuthenticationError for anything else."""
        if not _TOKEN.match(token):
            raise AuthenticationError("bearer token is malformed")
        rows = self.db.query(
            "SELECT p.id, p.entity, p.country, p.roles, p.created_at, p.revoked_at,"
            " t.revoked_at FROM tokens t JOIN principals p ON p.id = t.principal_id"
            " WHERE t.token_hash = ?",
            (hash_token(token),),
        )
        row = rows[0] if rows else None
        if row is None:
            raise AuthenticationError("bearer token is not known")
        principal = _row_to_principal(row[:6])
        if principal.is_revoked or row[6] is not None:
            raise AuthenticationError("bearer token was revoked")
        return principal
