"""The topology: countries → jurisdictions → home regions.

A topology is a TOML file (the built-in one is ``default_topology.toml`` next to this
module; see also ``docs/topology.md``)::

    version = "1"                      # required: recorded in the ledger with the digest
    description = "…"                  # optional

    [jurisdictions.eea]                # name: lowercase letters, digits and hyphens
    description = "…"                  # optional
    countries = ["AT", "BE", …]        # ISO 3166-1 alpha-2 codes, or "*" (catch-all)
    default_region = "eu-ie"           # required when the jurisdiction has several regions

    [regions.eu-ie]                    # name: lowercase letters, digits and hyphens
    jurisdiction = "eea"               # required: the jurisdiction whose data it holds
    location = "IE"                    # required: country where the data physically lives
    storage = "sqlite:///{data_dir}/regions/eu-ie/vault.db"   # required
    custodian = "local:{data_dir}/regions/eu-ie/keys"         # required
    description = "…"                  # optional
    countries = ["NO", "SE"]           # optional: countries homed here, not in the default

Routing rule (:meth:`Topology.home_region`): a country's home region is the region that
lists it in ``countries`` if one does, otherwise its jurisdiction's ``default_region``
(or the jurisdiction's only region). Each country belongs to at most one jurisdiction;
the one jurisdiction whose ``countries`` is ``"*"`` takes every ISO 3166-1 alpha-2 code
that no other jurisdiction lists. ``storage`` and ``custodian`` are templates whose only
placeholder is ``{data_dir}``; write a literal brace as ``{{`` or ``}}``.

Everything is checked when the file is parsed and reported as :class:`TopologyError`
naming the file and the fault; a running topology never holds a dangling reference.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

import pycountry

from domicile.config_file import TomlReader, read_config_text, shown
from domicile.errors import TopologyError, UnknownCountry, UnknownRegion

__all__ = [
    "CATCH_ALL",
    "Jurisdiction",
    "Region",
    "Topology",
    "is_country_code",
    "iso_country_codes",
    "load_topology",
    "normalise_country",
    "parse_topology",
]

CATCH_ALL = "*"
"""The value of ``countries`` that makes a jurisdiction take every unlisted country."""

# DNS-label shaped, so a region name is safe in paths, URLs and schema names.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PLACEHOLDERS = frozenset({"data_dir"})
_FORMAT = "domicile-topology/1"

_TOP_KEYS = frozenset({"version", "description", "jurisdictions", "regions"})
_JURISDICTION_KEYS = frozenset({"description", "countries", "default_region"})
_REGION_KEYS = frozenset(
    {"jurisdiction", "location", "storage", "custodian", "description", "countries"}
)


@cache
def iso_country_codes() -> frozenset[str]:
    """Return every ISO 3166-1 alpha-2 code (from pycountry, never a hand-typed list)."""
    return frozenset(str(country.alpha_2) for country in pycountry.countries)


def is_country_code(code: object) -> bool:
    """Return whether `code` is exactly an ISO 3166-1 alpha-2 code (uppercase, no spaces)."""
    return isinstance(code, str) and code in iso_country_codes()


def _shown(text: object) -> str:
    return shown(text, limit=32)


def normalise_country(country: object) -> str:
    """Return `country` stripped and uppercased; raise UnknownCountry unless ISO alpha-2."""
    # The ASCII check comes before upper(): "ß".upper() is "SS", a real code.
    if isinstance(country, str) and country.isascii():
        code = country.strip().upper()
        if code in iso_country_codes():
            return code
    raise UnknownCountry(f"`{_shown(country)}` is not an ISO 3166-1 alpha-2 country code")


@dataclass(frozen=True)
class Region:
    """A home region: where its data lives, its vault and its key custodian."""

    name: str
    jurisdiction: str
    location: str
    storage: str
    custodian: str
    description: str
    countries: frozenset[str] = field(default_factory=frozenset)
    """Countries homed here rather than in their jurisdiction's default region."""

    def storage_url(self, data_dir: Path | str) -> str:
        """Return the storage URL with `{data_dir}` filled in."""
        return self.storage.format(data_dir=data_dir)

    def custodian_url(self, data_dir: Path | str) -> str:
        """Return the custodian URL with `{data_dir}` filled in."""
        return self.custodian.format(data_dir=data_dir)


@dataclass(frozen=True)
class Jurisdiction:
    """A set of countries under one legal regime; `regions[0]` is its default region."""

    name: str
    countries: frozenset[str]
    regions: tuple[str, ...]
    description: str
    catch_all: bool = False
    """Whether `countries` was given as "*" (every code no other jurisdiction lists)."""

    @property
    def default_region(self) -> str:
        """Return the region of every country of this jurisdiction that no region claims."""
        return self.regions[0]


class Topology:
    """Countries → jurisdictions → home regions; build it with `parse_topology`."""

    def __init__(
        self,
        *,
        version: str,
        jurisdictions: Mapping[str, Jurisdiction],
        regions: Mapping[str, Region],
        description: str = "",
    ) -> None:
        """Hold already-validated parts; `parse_topology` is what checks them."""
        self.version = version
        self.description = description
        self.jurisdictions: Mapping[str, Jurisdiction] = MappingProxyType(dict(jurisdictions))
        self.regions: Mapping[str, Region] = MappingProxyType(dict(regions))
        self._jurisdiction_of: dict[str, str] = {}
        routes: dict[str, str] = {}
        for jurisdiction in self.jurisdictions.values():
            for country in jurisdiction.countries:
                self._jurisdiction_of[country] = jurisdiction.name
                routes[country] = jurisdiction.default_region
        for region in self.regions.values():
            for country in region.countries:
                routes[country] = region.name
        self.routes: Mapping[str, str] = MappingProxyType(dict(sorted(routes.items())))

    def __repr__(self) -> str:
        return (
            f"Topology(version={self.version!r}, jurisdictions={sorted(self.jurisdictions)!r}, "
            f"regions={sorted(self.regions)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(self.digest())

    def normalise_country(self, country: str) -> str:
        """Return `country` stripped and uppercased; raise UnknownCountry unless ISO alpha-2."""
        return normalise_country(country)

    def jurisdiction_of(self, country: str) -> Jurisdiction:
        """Return the jurisdiction of `country`; UnknownCountry if it is in none."""
        code = normalise_country(country)
        name = self._jurisdiction_of.get(code)
        if name is None:
            raise UnknownCountry(f"country `{code}` is in no jurisdiction of this topology")
        return self.jurisdictions[name]

    def home_region(self, country: str) -> str:
        """Return the name of the home region of people living in `country`."""
        code = normalise_country(country)
        region = self.routes.get(code)
        if region is None:
            raise UnknownCountry(f"country `{code}` is in no jurisdiction of this topology")
        return region

    def region(self, name: str) -> Region:
        """Return the region called `name`; raise UnknownRegion if there is none."""
        region = self.regions.get(name) if isinstance(name, str) else None
        if region is None:
            raise UnknownRegion(f"unknown region `{_shown(name)}`")
        return region

    def canonical(self) -> bytes:
        """Return the canonical encoding: sorted-key compact UTF-8 JSON of every setting."""
        document = {
            "format": _FORMAT,
            "version": self.version,
            "description": self.description,
            "jurisdictions": {
                j.name: {
                    "countries": sorted(j.countries),
                    "regions": list(j.regions),
                    "catch_all": j.catch_all,
                    "description": j.description,
                }
                for j in self.jurisdictions.values()
            },
            "regions": {
                r.name: {
                    "jurisdiction": r.jurisdiction,
                    "location": r.location,
                    "storage": r.storage,
                    "custodian": r.custodian,
                    "countries": sorted(r.countries),
                    "description": r.description,
                }
                for r in self.regions.values()
            },
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")

    def digest(self) -> str:
        """Return the SHA-256 hex digest of the canonical encoding."""
        return hashlib.sha256(self.canonical()).hexdigest()


# --- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawJurisdiction:
    name: str
    countries: frozenset[str] | None  # None: the catch-all
    default_region: str | None
    description: str


class _Reader(TomlReader):
    """Typed access to a parsed TOML document, raising TopologyError naming the file."""

    what = "topology"
    error = TopologyError

    def table(self, table: Mapping[str, object], key: str, where: str) -> dict[str, object]:
        value = table.get(key)
        if value is None:
            self.fail(f"{where} has no `{key}` table")
        if not isinstance(value, dict):
            self.fail(f"`{key}` in {where} must be a table")
        return value

    def text(
        self, table: Mapping[str, object], key: str, where: str, *, required: bool
    ) -> str | None:
        value = table.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            self.fail(
                f"{where} has no `{key}`"
                if value is None
                else f"`{key}` in {where} must be a string"
            )
        if required and not value.strip():
            self.fail(f"{where} has no `{key}` (it is empty)")
        return value

    def name(self, name: str, kind: str) -> str:
        if not _NAME.fullmatch(name):
            self.fail(
                f"{kind} name `{_shown(name)}` must be 1–63 lowercase letters, digits and "
                "hyphens, starting and ending with a letter or digit"
            )
        return name

    def country(self, code: object, where: str, *, verb: str = "lists") -> str:
        if not (isinstance(code, str) and code.isascii() and is_country_code(code.strip().upper())):
            self.fail(f"{where} {verb} `{_shown(code)}`, which is not an ISO 3166-1 alpha-2 code")
        return code.strip().upper()

    def countries(self, value: object, where: str) -> frozenset[str]:
        if not isinstance(value, list):
            self.fail(f"`countries` in {where} must be a list of ISO 3166-1 alpha-2 codes")
        codes: set[str] = set()
        for item in value:
            code = self.country(item, where)
            if code in codes:
                self.fail(f"{where} lists `{code}` twice")
            codes.add(code)
        return frozenset(codes)

    def template(self, value: str, key: str, where: str) -> str:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
        except ValueError:
            fields = None
        if fields is None or any(name not in _PLACEHOLDERS for name in fields):
            self.fail(
                f"`{key}` in {where} may use only the placeholder `{{data_dir}}` "
                "(write a literal brace as `{{` or `}}`)"
            )
        return value


def _parse_region(reader: _Reader, name: str, table: object) -> Region:
    """Read one `[regions.NAME]` table."""
    reader.name(name, "region")
    where = f"region `{name}`"
    if not isinstance(table, dict):
        reader.fail(f"{where} must be a table")
    reader.keys(table, _REGION_KEYS, where)
    jurisdiction = reader.text(table, "jurisdiction", where, required=True) or ""
    location = reader.text(table, "location", where, required=True) or ""
    storage = reader.text(table, "storage", where, required=True) or ""
    custodian = reader.text(table, "custodian", where, required=True) or ""
    countries = table.get("countries")
    return Region(
        name=name,
        jurisdiction=jurisdiction,
        location=reader.country(location, where, verb="has location"),
        storage=reader.template(storage, "storage", where),
        custodian=reader.template(custodian, "custodian", where),
        description=reader.text(table, "description", where, required=False) or "",
        countries=frozenset() if countries is None else reader.countries(countries, where),
    )


def _parse_jurisdiction(reader: _Reader, name: str, table: object) -> _RawJurisdiction:
    """Read one `[jurisdictions.NAME]` table."""
    reader.name(name, "jurisdiction")
    where = f"jurisdiction `{name}`"
    if not isinstance(table, dict):
        reader.fail(f"{where} must be a table")
    reader.keys(table, _JURISDICTION_KEYS, where)
    raw = table.get("countries")
    if raw is None:
        reader.fail(f'{where} has no `countries` (a list of ISO codes, or "*")')
    if isinstance(raw, str) and raw != CATCH_ALL:
        reader.fail(f'`countries` in {where} must be a list of ISO codes or "*"')
    countries = None if raw == CATCH_ALL else reader.countries(raw, where)
    return _RawJurisdiction(
        name=name,
        countries=countries,
        default_region=reader.text(table, "default_region", where, required=False),
        description=reader.text(table, "description", where, required=False) or "",
    )


def _claim_countries(
    reader: _Reader, jurisdictions: Mapping[str, _RawJurisdiction]
) -> dict[str, frozenset[str]]:
    """Return each jurisdiction's countries, the catch-all taking every unlisted code."""
    catch_alls = [j.name for j in jurisdictions.values() if j.countries is None]
    if len(catch_alls) > 1:
        names = " and ".join(f"`{name}`" for name in catch_alls)
        reader.fail(
            f'jurisdictions {names} are both catch-alls (`countries = "*"`); at most one may be'
        )
    owner: dict[str, str] = {}
    for jurisdiction in jurisdictions.values():
        for code in sorted(jurisdiction.countries or ()):
            if code in owner:
                reader.fail(
                    f"country `{code}` is in two jurisdictions: `{owner[code]}` and "
                    f"`{jurisdiction.name}`"
                )
            owner[code] = jurisdiction.name
    claimed = {j.name: j.countries or frozenset() for j in jurisdictions.values()}
    for name in catch_alls:
        claimed[name] = iso_country_codes() - owner.keys()
    return claimed


def _regions_of(
    reader: _Reader, jurisdictions: Mapping[str, _RawJurisdiction], regions: Mapping[str, Region]
) -> dict[str, tuple[str, ...]]:
    """Return each jurisdiction's regions, default first, then by name."""
    members: dict[str, list[str]] = {name: [] for name in jurisdictions}
    for region in regions.values():
        if region.jurisdiction not in members:
            reader.fail(
                f"region `{region.name}` names unknown jurisdiction `{_shown(region.jurisdiction)}`"
            )
        members[region.jurisdiction].append(region.name)
    ordered: dict[str, tuple[str, ...]] = {}
    for jurisdiction in jurisdictions.values():
        names = members[jurisdiction.name]
        where = f"jurisdiction `{jurisdiction.name}`"
        if not names:
            reader.fail(f"{where} has no region (no region names it as its `jurisdiction`)")
        default = jurisdiction.default_region
        if default is None:
            if len(names) > 1:
                listed = ", ".join(f"`{n}`" for n in names)
                reader.fail(f"{where} has several regions ({listed}) and no `default_region`")
            default = names[0]
        elif default not in names:
            reader.fail(
                f"`default_region` `{_shown(default)}` of {where} is not one of its regions"
            )
        # Sorted, not in file order, so moving a table around leaves the digest alone.
        ordered[jurisdiction.name] = (default, *sorted(n for n in names if n != default))
    return ordered


def _verify_overrides(
    reader: _Reader, claimed: Mapping[str, frozenset[str]], regions: Mapping[str, Region]
) -> None:
    """Check that a region lists only countries of its own jurisdiction, each once."""
    owner = {code: name for name, codes in claimed.items() for code in codes}
    homed: dict[str, str] = {}
    for region in regions.values():
        for code in sorted(region.countries):
            jurisdiction = owner.get(code)
            if jurisdiction is None:
                reader.fail(f"region `{region.name}` lists `{code}`, which is in no jurisdiction")
            if jurisdiction != region.jurisdiction:
                reader.fail(
                    f"region `{region.name}` lists `{code}`, which belongs to jurisdiction "
                    f"`{jurisdiction}`, not `{region.jurisdiction}`"
                )
            if code in homed:
                reader.fail(
                    f"country `{code}` is listed by two regions: `{homed[code]}` and "
                    f"`{region.name}`"
                )
            homed[code] = region.name


def parse_topology(text: str, *, source: str = "<string>") -> Topology:
    """Parse and validate topology TOML; raise TopologyError naming `source` and the fault."""
    reader = _Reader(source)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"topology `{source}`: not valid TOML: {exc}") from exc
    reader.keys(document, _TOP_KEYS, "the top level")
    version = reader.text(document, "version", "the top level", required=True) or ""
    description = reader.text(document, "description", "the top level", required=False) or ""
    raw_jurisdictions = {
        name: _parse_jurisdiction(reader, name, table)
        for name, table in reader.table(document, "jurisdictions", "the top level").items()
    }
    regions = {
        name: _parse_region(reader, name, table)
        for name, table in reader.table(document, "regions", "the top level").items()
    }
    if not raw_jurisdictions:
        reader.fail("defines no jurisdiction")
    claimed = _claim_countries(reader, raw_jurisdictions)
    ordered = _regions_of(reader, raw_jurisdictions, regions)
    _verify_overrides(reader, claimed, regions)
    jurisdictions = {
        name: Jurisdiction(
            name=name,
            countries=claimed[name],
            regions=ordered[name],
            description=raw.description,
            catch_all=raw.countries is None,
        )
        for name, raw in raw_jurisdictions.items()
    }
    return Topology(
        version=version, jurisdictions=jurisdictions, regions=regions, description=description
    )


def load_topology(path: Path | None = None) -> Topology:
    """Read and validate the topology at `path`, or the built-in default if `path` is None."""
    text, source = read_config_text(
        path, package="domicile.residency", default="default_topology.toml", what="topology",
        error=TopologyError,
    )  # fmt: skip
    return parse_topology(text, source=source)
