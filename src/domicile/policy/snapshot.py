"""An activated policy version: parsed Cedar handles built once, with its hash.

A :class:`PolicySnapshot` is immutable. The engine holds exactly one and replaces it
with a single reference assignment on reload, so an evaluation that read the reference
once sees one consistent version: policies, schema, configuration, ids and hash.

Loading checks, in order, and raises :class:`ConfigError` naming the source and the
fault: the schema parses; the policies parse; every policy has a unique ``@id`` that is
not a reserved name; there is no template; the policies validate against the schema
(``cedarpy.validate_policies``); the configuration's entities fit the schema.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cedarpy

from domicile.errors import ConfigError
from domicile.policy.config import PolicyConfig

__all__ = [
    "NAMESPACE",
    "RESERVED_IDS",
    "PolicySnapshot",
    "PolicySource",
    "build_snapshot",
    "default_policies",
    "default_schema",
    "read_source",
]

NAMESPACE = "Domicile"
"""The Cedar namespace of every entity type and action."""

RESERVED_IDS = frozenset({"default-deny", "fail-closed"})
"""Pseudo policy ids the engine uses in decisions; no policy may take them."""

SETTINGS_ID = "active"
"""The id of the one `Domicile::Settings` entity."""

_FORMAT = "domicile-policy/1"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_MAX_LISTED_ERRORS = 5


@dataclass(frozen=True)
class PolicySource:
    """Text of a policy or schema file and where it came from (for messages)."""

    text: str
    origin: str


def read_source(path: Path, what: str) -> PolicySource:
    """Read a UTF-8 file; ConfigError naming `what` and `path` if it cannot be read."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot read {what} `{path}`: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} `{path}` is not UTF-8 text") from exc
    return PolicySource(text, str(path))


def _packaged(name: str) -> PolicySource:
    resource = resources.files(__package__ or "domicile.policy") / name
    return PolicySource(resource.read_text(encoding="utf-8"), name)


def default_policies() -> PolicySource:
    """Return the built-in policy set (`default.cedar`)."""
    return _packaged("default.cedar")


def default_schema() -> PolicySource:
    """Return the built-in schema (`schema.cedarschema`)."""
    return _packaged("schema.cedarschema")


@dataclass(frozen=True, eq=False)
class PolicySnapshot:
    """One activated policy version; never mutated after `build_snapshot` returns it."""

    generation: int
    policies: PolicySource
    schema: PolicySource
    config: PolicyConfig
    policy_set: cedarpy.PolicySet
    schema_handle: cedarpy.Schema
    base_entities: cedarpy.Entities
    ids: Mapping[str, str]
    """Cedar's positional id (`policy0`…) → the policy's `@id`."""
    alerts: Mapping[str, frozenset[str]]
    """`@id` → the values of its `@alert` annotation (e.g. `break_glass`)."""
    policy_hash: str
    uses_time: bool
    """Whether any policy reads `context.time` (then the cache keys on time too)."""

    def policy_id(self, cedar_id: str) -> str:
        """Return the `@id` of the policy Cedar calls `cedar_id`."""
        return self.ids.get(cedar_id, cedar_id)

    def version_record(self) -> dict[str, Any]:
        """Return what the ledger records when this version is activated (enough to replay)."""
        return {
            "policy_hash": self.policy_hash,
            "generation": self.generation,
            "policy_ids": sorted(self.ids.values()),
            "policies": self.policies.text,
            "policies_origin": self.policies.origin,
            "schema": self.schema.text,
            "schema_origin": self.schema.origin,
            "config": self.config.document(),
        }


def _fail(origin: str, message: str) -> ConfigError:
    return ConfigError(f"policy file `{origin}`: {message}")


def _parse_schema(schema: PolicySource) -> cedarpy.Schema:
    try:
        return cedarpy.Schema.from_str(schema.text)
    except ValueError as exc:
        raise ConfigError(f"schema `{schema.origin}`: {_one_line(str(exc))}") from exc


def _parse_policies(policies: PolicySource) -> tuple[cedarpy.PolicySet, dict[str, object]]:
    try:
        policy_set = cedarpy.PolicySet.from_str(policies.text)
        est = json.loads(cedarpy.policies_to_json_str(policies.text))
    except ValueError as exc:
        raise _fail(policies.origin, f"does not parse: {_one_line(str(exc))}") from exc
    return policy_set, est


def _one_line(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def _annotations(origin: str, est: Mapping[str, object]) -> tuple[dict[str, str], dict[str, str]]:
    """Return (cedar id → @id, @id → @alert value); reject what makes ids unreadable."""
    if est.get("templates"):
        raise _fail(origin, "has templates (`?principal`/`?resource`); they are not supported")
    statics = est.get("staticPolicies")
    assert isinstance(statics, dict)
    ids: dict[str, str] = {}
    alerts: dict[str, str] = {}
    for cedar_id, body in statics.items():
        annotations = body.get("annotations") or {}
        given = annotations.get("id")
        if not isinstance(given, str) or not _ID.fullmatch(given):
            raise _fail(
                origin,
                f"policy number {int(cedar_id.removeprefix('policy')) + 1} has no usable "
                '`@id("…")` annotation (letters, digits and ._:-, up to 128)',
            )
        if given in RESERVED_IDS:
            raise _fail(origin, f"policy id `{given}` is reserved")
        if given in ids.values():
            raise _fail(origin, f"policy id `{given}` is used twice")
        ids[cedar_id] = given
        if "alert" in annotations:
            alerts[given] = str(annotations["alert"])
    return ids, alerts


def _validate(policies: PolicySource, schema: cedarpy.Schema, ids: Mapping[str, str]) -> None:
    result = cedarpy.validate_policies(policies.text, schema)
    if result.validation_passed:
        return
    messages = [
        f"`{ids.get(error.policy_id, error.policy_id)}`: {_one_line(error.error)}"
        if error.policy_id
        else _one_line(error.error)
        for error in result.errors
    ]
    more = len(messages) - _MAX_LISTED_ERRORS
    listed = "; ".join(messages[:_MAX_LISTED_ERRORS]) + (f"; and {more} more" if more > 0 else "")
    raise _fail(policies.origin, f"does not validate against the schema: {listed}")


def _uses_time(node: object) -> bool:
    """Return whether an EST node reads `context.time`, or `context` as a whole."""
    if isinstance(node, dict):
        for op in (".", "has"):
            access = node.get(op)
            if isinstance(access, dict) and access.get("left") == {"Var": "context"}:
                return access.get("attr") == "time"
        if node == {"Var": "context"}:
            return True  # the whole record is used (e.g. compared): time may matter
        return any(_uses_time(value) for value in node.values())
    if isinstance(node, list):
        return any(_uses_time(item) for item in node)
    return False


def _base_entities(config: PolicyConfig, schema: cedarpy.Schema) -> cedarpy.Entities:
    regions = [
        {
            "uid": {"type": f"{NAMESPACE}::Region", "id": region},
            "attrs": {"security_entity": entity},
            "parents": [],
        }
        for region, entity in sorted(config.security_entities.items())
    ]
    settings = {
        "uid": {"type": f"{NAMESPACE}::Settings", "id": SETTINGS_ID},
        "attrs": {
            "purposes": sorted(config.purposes),
            "countries_of_concern": sorted(config.countries_of_concern),
        },
        "parents": [],
    }
    try:
        return cedarpy.Entities.from_json_str(json.dumps([*regions, settings]), schema)
    except ValueError as exc:
        raise ConfigError(
            f"policy configuration does not fit the schema: {_one_line(str(exc))}"
        ) from exc


def _hash(est: Mapping[str, object], schema: cedarpy.Schema, config: PolicyConfig) -> str:
    # Hash meaning, not layout: the policies' JSON form (comments and whitespace gone),
    # the schema as Cedar renders it, and the configuration the policies read.
    document = {
        "format": _FORMAT,
        "policies": est,
        "schema": str(schema),
        "config": config.document(),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_snapshot(
    policies: PolicySource, schema: PolicySource, config: PolicyConfig, *, generation: int
) -> PolicySnapshot:
    """Parse, check and pre-build everything one policy version needs; ConfigError if bad."""
    schema_handle = _parse_schema(schema)
    policy_set, est = _parse_policies(policies)
    ids, alerts = _annotations(policies.origin, est)
    _validate(policies, schema_handle, ids)
    return PolicySnapshot(
        generation=generation,
        policies=policies,
        schema=schema,
        config=config,
        policy_set=policy_set,
        schema_handle=schema_handle,
        base_entities=_base_entities(config, schema_handle),
        ids=MappingProxyType(ids),
        alerts=MappingProxyType({k: frozenset(v.split(",")) for k, v in alerts.items()}),
        policy_hash=_hash(est, schema_handle, config),
        uses_time=_uses_time(est.get("staticPolicies")),
    )
