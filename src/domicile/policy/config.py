"""The policy configuration: purposes, countries of concern, security entities, approvals.

A TOML file (the built-in one is ``default_config.toml`` next to this module)::

    version = "1"                                  # required
    purposes = ["service", "support", …]           # required, at least one
    countries_of_concern = ["CN", "HK", …]         # ISO 3166-1 alpha-2 codes

    [security_entities]                            # region → its security entity's name
    eu-ie = "Trusted Security Partner EU"

    [approval_steps]                               # category → approval steps of a grant
    allowable = 1
    restricted = 2

Everything is checked when the file is parsed and reported as :class:`ConfigError`
naming the file and the fault. The canonical form is part of the policy hash: the
policies read the purposes, the countries of concern and the security entities.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import MappingProxyType

from domicile.config_file import TomlReader, read_config_text, shown
from domicile.errors import ConfigError
from domicile.residency.topology import is_country_code

__all__ = ["PolicyConfig", "load_policy_config", "parse_policy_config"]

_FORMAT = "domicile-policy-config/1"
_PURPOSE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TOP_KEYS = frozenset(
    {"version", "purposes", "countries_of_concern", "security_entities", "approval_steps"}
)
_STEP_CATEGORIES = ("public", "allowable", "restricted")  # least sensitive first
_MAX_STEPS = 10


_shown = shown


@dataclass(frozen=True)
class PolicyConfig:
    """The values the policies read but must not hard-code; build with `parse_policy_config`."""

    version: str
    purposes: tuple[str, ...]
    countries_of_concern: frozenset[str]
    security_entities: Mapping[str, str]
    approval_steps: Mapping[str, int]

    def approval_steps_for(self, category: str) -> int:
        """Return how many approval steps a grant on `category` needs (0: no grant needed)."""
        return self.approval_steps.get(category, 0)

    def is_known_purpose(self, purpose: str) -> bool:
        """Return whether `purpose` is in the configured list."""
        return purpose in self.purposes

    def verify_regions(self, regions: Iterable[str]) -> None:
        """Raise ConfigError unless every region in `regions` names a security entity."""
        missing = sorted(set(regions) - set(self.security_entities))
        if missing:
            listed = ", ".join(f"`{name}`" for name in missing)
            raise ConfigError(f"policy configuration names no security entity for {listed}")

    def document(self) -> dict[str, object]:
        """Return every setting as plain JSON-able values, sorted where order is not meaning."""
        return {
            "format": _FORMAT,
            "version": self.version,
            "purposes": sorted(self.purposes),
            "countries_of_concern": sorted(self.countries_of_concern),
            "security_entities": dict(sorted(self.security_entities.items())),
            "approval_steps": dict(sorted(self.approval_steps.items())),
        }

    def canonical(self) -> bytes:
        """Return the canonical encoding: sorted-key compact UTF-8 JSON of every setting."""
        text = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return text.encode("utf-8")

    def digest(self) -> str:
        """Return the SHA-256 hex digest of the canonical encoding."""
        return hashlib.sha256(self.canonical()).hexdigest()


class _Reader(TomlReader):
    """Typed access to a parsed TOML document, raising ConfigError naming the file."""

    what = "policy configuration"
    error = ConfigError

    def strings(self, document: Mapping[str, object], key: str) -> list[str]:
        value = document.get(key)
        if value is None:
            self.fail(f"has no `{key}`")
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f"`{key}` must be a list of strings")
        seen: set[str] = set()
        for item in value:
            if item in seen:
                self.fail(f"`{key}` lists `{_shown(item)}` twice")
            seen.add(item)
        return list(value)

    def table(self, document: Mapping[str, object], key: str) -> dict[str, object]:
        value = document.get(key, {})
        if not isinstance(value, dict):
            self.fail(f"`{key}` must be a table")
        return value


def _purposes(reader: _Reader, document: Mapping[str, object]) -> tuple[str, ...]:
    purposes = reader.strings(document, "purposes")
    if not purposes:
        reader.fail("`purposes` is empty: every read would be denied")
    for purpose in purposes:
        if not _PURPOSE.fullmatch(purpose):
            reader.fail(
                f"purpose `{_shown(purpose)}` must be a lowercase letter followed by up to 31 "
                "lowercase letters, digits, `_` and `-`"
            )
    return tuple(purposes)


def _countries(reader: _Reader, document: Mapping[str, object]) -> frozenset[str]:
    if "countries_of_concern" not in document:
        return frozenset()
    codes = reader.strings(document, "countries_of_concern")
    for code in codes:
        if not is_country_code(code):
            reader.fail(
                f"`countries_of_concern` lists `{_shown(code)}`, which is not an uppercase "
                "ISO 3166-1 alpha-2 code"
            )
    return frozenset(codes)


def _security_entities(reader: _Reader, document: Mapping[str, object]) -> dict[str, str]:
    table = reader.table(document, "security_entities")
    if not table:
        reader.fail("has no `[security_entities]`: no region would have a security entity")
    out: dict[str, str] = {}
    for region, name in table.items():
        if not _REGION.fullmatch(region):
            reader.fail(f"`security_entities` names region `{_shown(region)}`, not a region name")
        if not isinstance(name, str) or not name.strip():
            reader.fail(f"security entity of region `{region}` must be a non-empty string")
        if name != name.strip():
            reader.fail(f"security entity of region `{region}` has surrounding whitespace")
        out[region] = name
    return out


def _approval_steps(reader: _Reader, document: Mapping[str, object]) -> dict[str, int]:
    table = reader.table(document, "approval_steps")
    reader.keys(table, frozenset(_STEP_CATEGORIES), "`[approval_steps]`")
    steps: dict[str, int] = {}
    for category, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int):
            reader.fail(f"approval steps of `{category}` must be an integer")
        if not 0 <= value <= _MAX_STEPS:
            reader.fail(f"approval steps of `{category}` must be between 0 and {_MAX_STEPS}")
        steps[category] = value
    # Steps rise with sensitivity: restricted data never needs fewer approvals.
    ordered = [(c, steps.get(c, 0)) for c in _STEP_CATEGORIES]
    for (lower, low), (higher, high) in pairwise(ordered):
        if high < low:
            reader.fail(
                f"`{higher}` needs {high} approval steps but the less sensitive `{lower}` "
                f"needs {low}: steps must rise with sensitivity"
            )
    return steps


def parse_policy_config(text: str, *, source: str = "<string>") -> PolicyConfig:
    """Parse and validate policy configuration TOML; ConfigError names `source` and the fault."""
    reader = _Reader(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy configuration `{source}`: not valid TOML: {exc}") from exc
    reader.keys(document, _TOP_KEYS, "the top level")
    version = document.get("version")
    if not isinstance(version, str) or not version.strip():
        reader.fail("has no `version` (a non-empty string)")
    return PolicyConfig(
        version=version,
        purposes=_purposes(reader, document),
        countries_of_concern=_countries(reader, document),
        security_entities=MappingProxyType(_security_entities(reader, document)),
        approval_steps=MappingProxyType(_approval_steps(reader, document)),
    )


def load_policy_config(path: Path | None = None) -> PolicyConfig:
    """Read and validate the configuration at `path`, or the built-in default if None."""
    text, source = read_config_text(
        path, package="domicile.policy", default="default_config.toml",
        what="policy configuration", error=ConfigError,
    )  # fmt: skip
    return parse_policy_config(text, source=source)
