"""The data catalog: every field a subject can have, its category, type, size and transform.

A catalog is a TOML file (the built-in one is ``default_catalog.toml`` next to this
module; see also ``docs/catalog.md``)::

    version = "1"                    # required: recorded in the ledger with the digest
    description = "…"                # optional

    [fields.email]                   # name: lowercase letter, then letters, digits, `_`
    category = "restricted"          # required: restricted | allowable | public
    type = "email"                   # required: a name in validators.FIELD_TYPES
    transform = "pseudonymise"       # required: a name in TRANSFORMS, fitting the type
    max_bytes = 256                  # optional: defaults to the type's default limit
    description = "…"                # optional

Rules checked at load (reported as :class:`CatalogError` naming the file and the fault):
unknown keys, categories, types or transforms; a transform that does not fit the type;
a ``restricted`` field with transform ``keep`` (restricted data never leaves its region
unchanged); a stored field of category ``aggregate`` (that category is for derived data).

``max_bytes`` bounds the canonical JSON encoding of a normalised value (quotes included):
exactly the bytes :meth:`Catalog.encode` returns, which are what is encrypted and stored.
Messages never contain a field's value, only its name: the values are personal data.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Set
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeAlias

import orjson

from domicile.catalog.validators import FIELD_TYPES
from domicile.config_file import TomlReader, read_config_text, shown
from domicile.errors import CatalogError, InvalidFieldValue, PayloadTooLarge, UnknownField
from domicile.jsonvalues import is_json

__all__ = [
    "TRANSFORMS",
    "Catalog",
    "Category",
    "FieldSpec",
    "JsonValue",
    "decode_canonical",
    "load_catalog",
    "parse_catalog",
]

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None
"""A value JSON can carry: what a normalised field value is."""


class Category(StrEnum):
    """How sensitive a field is, which decides who may see it and where it may go."""

    RESTRICTED = "restricted"
    ALLOWABLE = "allowable"
    PUBLIC = "public"
    AGGREGATE = "aggregate"


TRANSFORMS: Mapping[str, frozenset[str] | None] = MappingProxyType(
    {
        "keep": None,
        "suppress": None,
        "pseudonymise": None,
        "generalise:year": frozenset({"date"}),
        "generalise:country": frozenset({"coordinates", "country", "ip_address", "phone"}),
        "generalise:prefix": frozenset({"ip_address", "phone"}),
    }
)
"""Transform names a field may give, each with the types it fits (None: every type)."""

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MAX_BYTES_CEILING = 16 * 1024 * 1024
_FORMAT = "domicile-catalog/1"
_TOP_KEYS = frozenset({"version", "description", "fields"})
_FIELD_KEYS = frozenset({"category", "type", "transform", "max_bytes", "description"})


_shown = shown


def _canonical_json(value: object) -> bytes | None:
    """Return sorted-key compact UTF-8 JSON of `value`, or None if it is not JSON."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return None


_NOT_FAST = object()


def _fast_decode(data: bytes) -> object:
    """The value of canonical `data` if orjson proves it so, else `_NOT_FAST`.

    orjson writes what `_canonical_json` writes (sorted keys, compact, UTF-8) except
    for floats, integers beyond 64 bits and characters it refuses; values holding a float
    go the slow way, the rest must round-trip to the same bytes.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_FAST
    if type(value) in (dict, list, float) and not is_json(value):
        return _NOT_FAST
    try:
        again = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _NOT_FAST
    return value if again == data else _NOT_FAST


def decode_canonical(name: str, data: bytes) -> JsonValue:
    """The value of field `name` whose canonical JSON is `data`; InvalidFieldValue unless
    `data` is canonical. Needs no catalog (`Catalog.decode` checks the field exists), so
    an export's worker processes decode with it."""
    if type(data) is bytes:  # the common case, several times faster through orjson
        fast = _fast_decode(data)
        if fast is not _NOT_FAST:
            return fast  # type: ignore[return-value]
    value: JsonValue = None
    parsed = False
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            value = json.loads(bytes(data).decode("utf-8"))
            parsed = True
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
            parsed = False
    # Re-encoding must give the same bytes, which also refuses NaN and duplicate keys.
    if not parsed or _canonical_json(value) != bytes(data):
        raise InvalidFieldValue(f"stored value of field `{name}` is not canonical JSON")
    return value


@dataclass(frozen=True)
class FieldSpec:
    """One field of the catalog."""

    name: str
    category: Category
    type: str
    max_bytes: int
    transform: str
    description: str


class Catalog:
    """A versioned set of field specs; build it with `parse_catalog` or `load_catalog`."""

    def __init__(
        self, *, version: str, fields: Mapping[str, FieldSpec], description: str = ""
    ) -> None:
        """Hold already-validated field specs; `parse_catalog` is what checks them."""
        self.version = version
        self.description = description
        self.fields: Mapping[str, FieldSpec] = MappingProxyType(dict(fields))

    def __repr__(self) -> str:
        return f"Catalog(version={self.version!r}, fields={len(self.fields)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalog):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.digest())

    def field(self, name: str) -> FieldSpec:
        """Return the spec of field `name`; raise UnknownField if the catalog has none."""
        spec = self.fields.get(name) if isinstance(name, str) else None
        if spec is None:
            raise UnknownField(f"unknown field `{_shown(name)}`")
        return spec

    def fields_in(self, category: Category) -> tuple[str, ...]:
        """Return the names of the fields of `category`, in catalog order."""
        return tuple(name for name, spec in self.fields.items() if spec.category == category)

    def validate(
        self, values: Mapping[str, object], *, max_field_bytes: int | None = None
    ) -> dict[str, JsonValue]:
        """Return every value normalised, or raise for the first fault: never a partial result.

        Raises UnknownField (checked for every name before any value), InvalidFieldValue,
        or PayloadTooLarge when a value is over its field's `max_bytes` or `max_field_bytes`.
        """
        if not isinstance(values, Mapping):
            raise InvalidFieldValue("field values must be an object of field names to values")
        specs = [self.field(name) for name in values]
        return {
            spec.name: self._validate_value(spec, raw, max_field_bytes)
            for spec, raw in zip(specs, values.values(), strict=True)
        }

    def _validate_value(
        self, spec: FieldSpec, raw: object, max_field_bytes: int | None
    ) -> JsonValue:
        limit = spec.max_bytes if max_field_bytes is None else min(spec.max_bytes, max_field_bytes)
        too_large = f"field `{spec.name}` is over its size limit of {limit} bytes"
        # A string longer in characters than the limit is longer in bytes too; refuse it
        # before a validator spends time on it.
        if isinstance(raw, str) and len(raw) > limit:
            raise PayloadTooLarge(too_large)
        value = FIELD_TYPES[spec.type].validate(spec.name, raw)
        encoded = _canonical_json(value)
        if encoded is None:
            raise InvalidFieldValue(f"field `{spec.name}` has a value that is not JSON")
        if len(encoded) > limit:
            raise PayloadTooLarge(too_large)
        return value

    def encode(self, name: str, value: JsonValue) -> bytes:
        """Return the canonical JSON bytes of a normalised value (what gets encrypted)."""
        spec = self.field(name)
        encoded = _canonical_json(value)
        if encoded is None:
            raise InvalidFieldValue(f"field `{spec.name}` has a value that is not JSON")
        return encoded

    def decode(self, name: str, data: bytes) -> JsonValue:
        """Return the value `encode` turned into `data`; InvalidFieldValue unless canonical.

        The value is not validated against the field's type again: it was validated by the
        catalog in force when it was written, and a read must not fail because a later
        catalog version tightened a rule.
        """
        return decode_canonical(self.field(name).name, data)

    def canonical(self) -> bytes:
        """Return the canonical encoding: sorted-key compact UTF-8 JSON of every setting."""
        document = {
            "format": _FORMAT,
            "version": self.version,
            "description": self.description,
            "fields": {
                spec.name: {
                    "category": spec.category.value,
                    "type": spec.type,
                    "max_bytes": spec.max_bytes,
                    "transform": spec.transform,
                    "description": spec.description,
                }
                for spec in self.fields.values()
            },
        }
        encoded = _canonical_json(document)
        assert encoded is not None  # built from strings and ints only
        return encoded

    def digest(self) -> str:
        """Return the SHA-256 hex digest of the canonical encoding."""
        return hashlib.sha256(self.canonical()).hexdigest()


# --- parsing ----------------------------------------------------------------------------


class _Reader(TomlReader):
    """Typed access to a parsed TOML document, raising CatalogError naming the file."""

    what = "catalog"
    error = CatalogError

    def text(self, table: Mapping[str, object], key: str, where: str, *, required: bool) -> str:
        value = table.get(key)
        if value is None and not required:
            return ""
        if value is None:
            self.fail(f"{where} has no `{key}`")
        if not isinstance(value, str):
            self.fail(f"`{key}` in {where} must be a string")
        if required and not value.strip():
            self.fail(f"{where} has no `{key}` (it is empty)")
        return value

    def choice(self, table: Mapping[str, object], key: str, where: str, known: Set[str]) -> str:
        value = self.text(table, key, where, required=True)
        if value not in known:
            listed = ", ".join(sorted(known))
            self.fail(f"{where} has unknown {key} `{_shown(value)}` (known: {listed})")
        return value

    def max_bytes(self, table: Mapping[str, object], where: str, default: int) -> int:
        value = table.get("max_bytes", default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"`max_bytes` in {where} must be an integer")
        if not 1 <= value <= _MAX_BYTES_CEILING:
            self.fail(f"`max_bytes` in {where} must be between 1 and {_MAX_BYTES_CEILING}")
        return value


def _parse_field(reader: _Reader, name: str, table: object) -> FieldSpec:
    """Read and check one `[fields.NAME]` table."""
    if not _FIELD_NAME.fullmatch(name):
        reader.fail(
            f"field name `{_shown(name)}` must be a lowercase letter followed by up to 63 "
            "lowercase letters, digits and underscores"
        )
    where = f"field `{name}`"
    if not isinstance(table, dict):
        reader.fail(f"{where} must be a table")
    reader.keys(table, _FIELD_KEYS, where)
    category = Category(reader.choice(table, "category", where, {c.value for c in Category}))
    type_name = reader.choice(table, "type", where, FIELD_TYPES.keys())
    transform = reader.choice(table, "transform", where, TRANSFORMS.keys())
    if category is Category.AGGREGATE:
        reader.fail(f"{where} has category `aggregate`, which is for derived data, not fields")
    if category is Category.RESTRICTED and transform == "keep":
        reader.fail(
            f"{where} is restricted but has transform `keep`: restricted data never leaves "
            "its region unchanged"
        )
    fits = TRANSFORMS[transform]
    if fits is not None and type_name not in fits:
        listed = ", ".join(sorted(fits))
        reader.fail(
            f"{where} has transform `{transform}`, which does not fit type `{type_name}` "
            f"(it fits: {listed})"
        )
    return FieldSpec(
        name=name,
        category=category,
        type=type_name,
        max_bytes=reader.max_bytes(table, where, FIELD_TYPES[type_name].default_max_bytes),
        transform=transform,
        description=reader.text(table, "description", where, required=False),
    )


def parse_catalog(text: str, *, source: str = "<string>") -> Catalog:
    """Parse and validate catalog TOML; raise CatalogError naming `source` and the fault."""
    reader = _Reader(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog `{source}`: not valid TOML: {exc}") from exc
    reader.keys(document, _TOP_KEYS, "the top level")
    version = reader.text(document, "version", "the top level", required=True)
    description = reader.text(document, "description", "the top level", required=False)
    tables = document.get("fields")
    if not isinstance(tables, dict) or not tables:
        reader.fail("has no `[fields.NAME]` table")
    fields = {name: _parse_field(reader, name, table) for name, table in tables.items()}
    return Catalog(version=version, fields=fields, description=description)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalog at `path`, or the built-in default if `path` is None."""
    text, source = read_config_text(
        path, package="domicile.catalog", default="default_catalog.toml", what="catalog",
        error=CatalogError,
    )  # fmt: skip
    return parse_catalog(text, source=source)
