"""The legacy store: plaintext user rows in a SQLite file or a PostgreSQL table.

Rows are read in id order, a page at a time (keyset pagination, so memory stays flat
and deleted rows never shift a page). Legacy ids travel as *keys*: `i:<int>` or
`s:<text>`, so a key written to the progress table maps back to the typed id the
source compares against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from domicile.errors import ConfigError, InvalidInput
from domicile.migrate.mapping import MappingSpec
from domicile.storage.database import SqliteDatabase, open_database
from domicile.storage.url import SqliteUrl, StorageUrl, parse_storage_url

if TYPE_CHECKING:
    from domicile.storage.postgres import PostgresDatabase

_CHUNK = 400
"""Ids per delete or tombstone statement."""

LegacyRow = tuple[Any, ...]
"""(typed id, country, mapped column values in mapping order)."""


def legacy_key(value: object) -> str:
    """The progress-table key of a typed legacy id."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("legacy ids must be integers or text")
    return f"i:{value}" if isinstance(value, int) else f"s:{value}"


def legacy_id(key: str) -> int | str:
    """The typed legacy id of a progress-table key."""
    return int(key[2:]) if key.startswith("i:") else key[2:]


def _quote(name: str) -> str:
    # Mapping identifiers are checked against a strict pattern; quoting keeps case.
    return '"' + name + '"'


def describe_url(url: StorageUrl) -> str:
    """A printable name of a source url without credentials."""
    if isinstance(url, SqliteUrl):
        return f"sqlite://{url.path.resolve()}"
    parts = urlsplit(url.dsn)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}?schema={url.schema}"


class LegacySource:
    """One legacy table, read in pages and deleted (or tombstoned) by id."""

    def __init__(self, url: str, mapping: MappingSpec) -> None:
        parsed = parse_storage_url(url)
        if isinstance(parsed, SqliteUrl) and not parsed.path.is_file():
            raise ConfigError(f"legacy source `{parsed.path}` does not exist")
        self.url: StorageUrl = parsed
        self.url_text = url
        self.mapping = mapping
        self.label = f"{describe_url(parsed)}#{mapping.table}"
        self.source_id = hashlib.sha256(self.label.encode()).hexdigest()[:16]
        self.db: SqliteDatabase | PostgresDatabase = open_database(parsed)
        m = mapping
        self._table = _quote(m.table)
        self._id = _quote(m.id_column)
        cols = [m.id_column, m.country_column, *m.columns]
        self._select = ", ".join(_quote(c) for c in cols)
        self._live = f" AND {_quote(m.tombstone_column)} IS NULL" if m.tombstone_column else ""

    def close(self) -> None:
        """Close the source database."""
        self.db.close()

    def count_live(self) -> int:
        """Rows still present (not deleted, not tombstoned)."""
        rows = self.db.query(f"SELECT COUNT(*) FROM {self._table} WHERE 1 = 1{self._live}")
        return int(rows[0][0])

    def pages(self, size: int, *, after: object = None) -> Iterator[list[LegacyRow]]:
        """Yield live rows in id order, `size` at a time."""
        while True:
            page = self.page(size, after)
            if not page:
                return
            yield page
            after = page[-1][0]

    def page(self, size: int, after: object) -> list[LegacyRow]:
        """Up to `size` live rows with id greater than `after` (all when None)."""
        where = "1 = 1" if after is None else f"{self._id} > ?"
        params: tuple[Any, ...] = () if after is None else (after,)
        rows = self.db.query(
            f"SELECT {self._select} FROM {self._table} WHERE {where}{self._live}"
            f" ORDER BY {self._id} LIMIT {int(size)}",
            params,
        )
        # Both drivers give plain tuples (no row factory is set): no copy per row.
        return rows if all(type(row) is tuple for row in rows) else [tuple(r) for r in rows]

    def remove(self, keys: Sequence[str]) -> int:
        """Delete or tombstone the rows of `keys` in one transaction; idempotent."""
        ids = [legacy_id(k) for k in keys]
        if not ids:
            return 0
        marks = ", ".join("?" for _ in range(_CHUNK))
        head: tuple[str, ...] = ()
        if self.mapping.tombstone_column is None:
            statement = f"DELETE FROM {self._table} WHERE {self._id} IN ({marks})"
        else:
            # A tombstone keeps the id and the time, never a value.
            cleared = ", ".join(f"{_quote(c)} = NULL" for c in self.mapping.columns)
            statement = (
                f"UPDATE {self._table} SET {_quote(self.mapping.tombstone_column)} = ?,"
                f" {cleared} WHERE {self._id} IN ({marks})"
            )
            head = (datetime.now(UTC).isoformat(timespec="seconds"),)
        with self.db.transaction() as tx:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                # A short chunk repeats its last id: one statement text for every chunk.
                tx.execute(statement, (*head, *chunk, *[chunk[-1]] * (_CHUNK - len(chunk))))
        return len(ids)

    def present(self, keys: Sequence[str]) -> list[str]:
        """Which of `keys` still hold a live row (or, tombstoned, any value)."""
        found: list[str] = []
        dirty = " OR ".join(f"{_quote(c)} IS NOT NULL" for c in self.mapping.columns)
        live = f" AND ({self._live[5:]} OR {dirty})" if self._live else ""
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = self.db.query(
                f"SELECT {self._id} FROM {self._table} WHERE {self._id} IN ({marks}){live}",
                tuple(legacy_id(k) for k in chunk),
            )
            found.extend(legacy_key(r[0]) for r in rows)
        return found
