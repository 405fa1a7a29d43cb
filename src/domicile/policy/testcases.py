"""Policy test cases: requests with the decision they must get, in TOML or JSON.

A file names principals once and refers to them from cases (see docs/policies.md)::

    [principals.svc-eu]
    entity = "Domicile EU Ltd"
    country = "IE"
    roles = ["service"]

    [[case]]
    name = "an EU service reads an Irish subject's email for support"
    principal = "svc-eu"
    action = "read"
    region = "eu-ie"              # the data's home region (its jurisdiction from the topology)
    category = "restricted"       # or, for `administer`: setting = "principals"
    purpose = "support"
    source_country = "IE"         # optional: defaults to the principal's country
    break_glass = false           # optional, as are transfer_agreement, transforms_applied,
                                  # destination_country and time
    expect = "allow"              # or "deny"
    policies = ["service-in-home-jurisdiction"]   # optional: the exact determining ids

    [case.grant]                  # optional: the grant found; every key optional (false, "")
    id = "g-1"
    approved = true
    purpose = "support"
    categories = ["restricted"]
    covers_subject = true

JSON files have the same shape: ``{"principals": {...}, "case": [...]}``.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from domicile.errors import ConfigError
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import (
    NO_GRANT,
    CedarRequest,
    DataResource,
    GrantState,
    PolicyContext,
    PolicyDecision,
    PolicyPrincipal,
    SettingResource,
)
from domicile.policy.places import locate
from domicile.residency.topology import Topology

__all__ = ["CaseResult", "PolicyTestCase", "load_test_cases", "parse_test_cases", "run_test_cases"]

_PRINCIPAL_KEYS = frozenset({"entity", "country", "roles"})
_CASE_KEYS = frozenset(
    {
        "name",
        "principal",
        "action",
        "region",
        "category",
        "setting",
        "purpose",
        "source_country",
        "grant",
        "break_glass",
        "transfer_agreement",
        "transforms_applied",
        "destination_country",
        "time",
        "expect",
        "policies",
    }
)
_GRANT_KEYS = frozenset(GrantState.__dataclass_fields__)


@dataclass(frozen=True)
class PolicyTestCase:
    """One request and the decision it must get."""

    name: str
    request: CedarRequest
    expect_allow: bool
    policies: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case."""

    case: PolicyTestCase
    decision: PolicyDecision
    passed: bool
    message: str


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(f"policy tests `{self.source}`: {message}")

    def keys(self, table: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(
                f"unknown key `{unknown[0]}` in {where} (known: {', '.join(sorted(allowed))})"
            )

    def get(self, table: Mapping[str, object], key: str, kind: type, where: str) -> object:
        value = table.get(key)
        if value is None:
            self.fail(f"{where} has no `{key}`")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(f"`{key}` in {where} must be a {kind.__name__}")
        return value

    def optional(self, table: Mapping[str, object], key: str, kind: type, where: str) -> object:
        return None if key not in table else self.get(table, key, kind, where)

    def strings(self, table: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
        value = self.get(table, key, list, where)
        assert isinstance(value, list)
        if not all(isinstance(item, str) for item in value):
            self.fail(f"`{key}` in {where} must be a list of strings")
        return tuple(value)


def _principal(reader: _Reader, topology: Topology, name: str, table: object) -> PolicyPrincipal:
    where = f"principal `{name}`"
    if not isinstance(table, dict):
        reader.fail(f"{where} must be a table")
    reader.keys(table, _PRINCIPAL_KEYS, where)
    country, jurisdiction, region = locate(topology, str(reader.get(table, "country", str, where)))
    return PolicyPrincipal(
        id=name,
        entity=str(reader.get(table, "entity", str, where)),
        country=country,
        jurisdiction=jurisdiction,
        region=region,
        roles=frozenset(reader.strings(table, "roles", where)),
    )


def _integer(value: object) -> int:
    return value if isinstance(value, int) else 0


def _grant(reader: _Reader, value: object, where: str) -> GrantState:
    if value is None:
        return NO_GRANT
    if not isinstance(value, dict):
        reader.fail(f"`grant` in {where} must be a table")
    where = f"the grant of {where}"
    reader.keys(value, _GRANT_KEYS, where)
    flags = {
        key: bool(reader.optional(value, key, bool, where))
        for key in ("approved", "expired", "revoked", "covers_subject")
    }
    categories = reader.strings(value, "categories", where) if "categories" in value else ()
    return GrantState(
        id=str(reader.optional(value, "id", str, where) or ""),
        purpose=str(reader.optional(value, "purpose", str, where) or ""),
        categories=frozenset(categories),
        **flags,
    )


def _resource(
    reader: _Reader, topology: Topology, table: Mapping[str, object], where: str
) -> DataResource | SettingResource:
    setting = reader.optional(table, "setting", str, where)
    if setting is not None:
        return SettingResource(str(setting))
    region = str(reader.get(table, "region", str, where))
    known = topology.regions.get(region)
    return DataResource(
        region,
        known.jurisdiction if known is not None else "",
        str(reader.get(table, "category", str, where)),
    )


def _context(
    reader: _Reader,
    topology: Topology,
    table: Mapping[str, object],
    principal: PolicyPrincipal,
    where: str,
) -> PolicyContext:
    given = reader.optional(table, "source_country", str, where)
    destination = reader.optional(table, "destination_country", str, where)
    source, jurisdiction, region = locate(topology, str(given or principal.country))
    return PolicyContext(
        purpose=str(reader.optional(table, "purpose", str, where) or ""),
        source_country=source,
        source_jurisdiction=jurisdiction,
        source_region=region,
        grant=_grant(reader, table.get("grant"), where),
        break_glass=bool(reader.optional(table, "break_glass", bool, where)),
        transfer_agreement=str(reader.optional(table, "transfer_agreement", str, where) or ""),
        transforms_applied=bool(reader.optional(table, "transforms_applied", bool, where)),
        destination_country=locate(topology, str(destination))[0] if destination else "",
        time=_integer(reader.optional(table, "time", int, where)),
    )


def _case(
    reader: _Reader,
    topology: Topology,
    principals: Mapping[str, PolicyPrincipal],
    index: int,
    table: object,
) -> PolicyTestCase:
    where = f"case {index + 1}"
    if not isinstance(table, dict):
        reader.fail(f"{where} must be a table")
    reader.keys(table, _CASE_KEYS, where)
    name = str(reader.get(table, "name", str, where))
    where = f"case `{name}`"
    who = str(reader.get(table, "principal", str, where))
    if who not in principals:
        reader.fail(f"{where} names unknown principal `{who}`")
    expect = reader.get(table, "expect", str, where)
    if expect not in ("allow", "deny"):
        reader.fail(f'`expect` in {where} must be "allow" or "deny"')
    request = CedarRequest(
        principals[who],
        str(reader.get(table, "action", str, where)),
        _resource(reader, topology, table, where),
        _context(reader, topology, table, principals[who], where),
    )
    policies = reader.strings(table, "policies", where) if "policies" in table else None
    return PolicyTestCase(name, request, expect == "allow", policies)


def parse_test_cases(
    text: str, topology: Topology, *, source: str = "<string>", json_format: bool = False
) -> list[PolicyTestCase]:
    """Parse a TOML (or JSON) file of test cases; ConfigError names `source` and the fault."""
    reader = _Reader(source)
    try:
        document = json.loads(text) if json_format else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if json_format else "TOML"
        reader.fail(f"not valid {kind}: {' '.join(str(exc).split())}")
    if not isinstance(document, dict):
        reader.fail("must be an object with `principals` and `case`")
    reader.keys(document, frozenset({"principals", "case"}), "the top level")
    raw_principals = document.get("principals", {})
    if not isinstance(raw_principals, dict):
        reader.fail("`principals` must be a table")
    principals = {
        name: _principal(reader, topology, name, table) for name, table in raw_principals.items()
    }
    cases = document.get("case")
    if not isinstance(cases, list) or not cases:
        reader.fail("has no `[[case]]`")
    return [_case(reader, topology, principals, i, table) for i, table in enumerate(cases)]


def load_test_cases(path: Path, topology: Topology) -> list[PolicyTestCase]:
    """Read a `.toml` or `.json` file of test cases."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot read policy tests `{path}`: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"policy tests `{path}` are not UTF-8 text") from exc
    return parse_test_cases(
        text, topology, source=str(path), json_format=Path(path).suffix.lower() == ".json"
    )


def run_test_cases(engine: PolicyEngine, cases: Sequence[PolicyTestCase]) -> list[CaseResult]:
    """Decide every case against the engine's active version and compare."""
    results = []
    for case, decision in zip(cases, engine.decide_many([c.request for c in cases]), strict=True):
        failures = []
        if decision.allowed != case.expect_allow:
            got = "allow" if decision.allowed else "deny"
            failures.append(f"expected {'allow' if case.expect_allow else 'deny'}, got {got}")
        if case.policies is not None and set(case.policies) != set(decision.policy_ids):
            failures.append(
                f"expected policies {', '.join(sorted(case.policies)) or '(none)'}, "
                f"got {', '.join(decision.policy_ids) or '(none)'}"
            )
        message = "; ".join(failures) or decision.reason
        results.append(CaseResult(case, decision, not failures, message))
    return results
