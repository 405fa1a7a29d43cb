"""The mapping file: which legacy columns are which catalog fields (TOML, pure).

::

    table = "users"              # legacy table
    id_column = "legacy_id"      # unique, orderable row id
    country_column = "country"   # ISO 3166-1 alpha-2 country of residence
    on_moved = "delete"          # or "tombstone" (needs tombstone_column)
    tombstone_column = "migrated_at"

    [columns]                    # legacy column = catalog field
    name = "full_name"
    email = "email"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from domicile.catalog.catalog import Catalog
from domicile.errors import ConfigError, UnknownField

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_KEYS = frozenset(
    {"table", "id_column", "country_column", "on_moved", "tombstone_column", "columns"}
)


@dataclass(frozen=True)
class MappingSpec:
    """A parsed mapping: the legacy table and its column → catalog field map."""

    table: str
    id_column: str
    country_column: str
    columns: MappingProxyType[str, str]
    on_moved: str = "delete"
    tombstone_column: str | None = None

    @property
    def tombstones(self) -> bool:
        """True when moved rows are tombstoned rather than deleted."""
        return self.on_moved == "tombstone"


def _identifier(value: object, key: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(f"mapping `{key}` must be a plain sql identifier")
    return value


def parse_mapping(text: str, catalog: Catalog) -> MappingSpec:
    """Parse and check a mapping against the catalog; ConfigError on any fault."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping is not valid toml: {exc}") from exc
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"mapping has an unknown key `{unknown[0]}`")
    columns = raw.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise ConfigError("mapping needs a non-empty `[columns]` table")
    fields: dict[str, str] = {}
    for column, name in columns.items():
        _identifier(column, f"columns.{column}")
        try:
            catalog.field(name)
        except UnknownField as exc:
            raise ConfigError(f"mapping column `{column}`: {exc}") from exc
        if name in fields.values():
            raise ConfigError(f"mapping names field `{name}` twice")
        fields[column] = name
    on_moved = raw.get("on_moved", "delete")
    if on_moved not in {"delete", "tombstone"}:
        raise ConfigError("mapping `on_moved` must be `delete` or `tombstone`")
    tombstone = raw.get("tombstone_column")
    if on_moved == "tombstone":
        tombstone = _identifier(tombstone, "tombstone_column")
    elif tombstone is not None:
        raise ConfigError('mapping `tombstone_column` needs `on_moved = "tombstone"`')
    spec = MappingSpec(
        table=_identifier(raw.get("table"), "table"),
        id_column=_identifier(raw.get("id_column"), "id_column"),
        country_column=_identifier(raw.get("country_column"), "country_column"),
        columns=MappingProxyType(fields),
        on_moved=on_moved,
        tombstone_column=tombstone,
    )
    special = {spec.id_column, spec.country_column, spec.tombstone_column}
    if special & set(fields):
        raise ConfigError("mapping maps the id, country or tombstone column to a field")
    return spec


def load_mapping(path: Path, catalog: Catalog) -> MappingSpec:
    """Read and parse a mapping file."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read mapping `{path}`: {exc.strerror}") from exc
    return parse_mapping(text, catalog)
