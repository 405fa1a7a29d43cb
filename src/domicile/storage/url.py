"""Storage URLs: `sqlite:///path/file.db` or `postgresql://…/db?schema=name[&pool_size=N]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from domicile.errors import ConfigError

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class SqliteUrl:
    """A SQLite database file."""

    path: Path

    def __str__(self) -> str:
        return f"sqlite:///{self.path}"


POOL_SIZE = 16
"""Connections a process may hold to one schema, unless the url says `pool_size=N`."""


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL database and the schema inside it that a store owns."""

    dsn: str
    schema: str
    pool_size: int = POOL_SIZE
    """The most connections one process holds to this schema (each grows on demand)."""

    def __str__(self) -> str:
        parts = urlsplit(self.dsn)
        query = [*parse_qsl(parts.query), ("schema", self.schema)]
        if self.pool_size != POOL_SIZE:
            query.append(("pool_size", str(self.pool_size)))
        return urlunsplit(parts._replace(query=urlencode(query)))


StorageUrl = SqliteUrl | PostgresUrl


def parse_storage_url(url: str, *, default_schema: str = "public") -> StorageUrl:
    """Parse a storage URL; `{schema}` may be given as the `schema` query parameter."""
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:") :]
        if rest.startswith("///"):
            # sqlite:///abs/path (empty authority); a filled-in absolute {data_dir} may
            # add more slashes, which name the same root.
            rest = "/" + rest.lstrip("/")
        elif rest.startswith("//"):
            raise ConfigError(f"sqlite url `{url}` must be sqlite:///path or sqlite:path")
        if not rest or rest == "/":
            raise ConfigError(f"sqlite url `{url}` names no file")
        return SqliteUrl(Path(rest))
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        schema, pool_size = default_schema, str(POOL_SIZE)
        kept = []
        for key, value in query:
            if key == "schema":
                schema = value
            elif key == "pool_size":
                pool_size = value
            else:
                kept.append((key, value))
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"postgresql schema `{schema}` is not a lowercase identifier")
        if not pool_size.isdigit() or not 1 <= int(pool_size) <= 1000:
            raise ConfigError(f"pool_size `{pool_size[:32]}` is not a number from 1 to 1000")
        dsn = urlunsplit(parts._replace(query=urlencode(kept)))
        return PostgresUrl(dsn=dsn, schema=schema, pool_size=int(pool_size))
    raise ConfigError(f"storage url `{url}` is neither sqlite: nor postgresql://")


def with_schema(url: StorageUrl, schema: str) -> StorageUrl:
    """Return a PostgreSQL url with another schema; SQLite urls are returned unchanged."""
    if isinstance(url, PostgresUrl):
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"postgresql schema `{schema}` is not a lowercase identifier")
        return PostgresUrl(dsn=url.dsn, schema=schema, pool_size=url.pool_size)
    return url
