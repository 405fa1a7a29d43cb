"""Replaying logged decisions under the policy version the log recorded for them.

A `policy-version` entry carries the full policies, schema and configuration; a
`decision` entry carries its policy hash and masked input. The replayer rebuilds the
engine of each version it meets and decides the input again, the way the gateway's
adapter builds its request (docs/monitor.md, "Replay", says what cannot be exact):

* jurisdictions and regions come from the topology, categories from the catalog — the
  monitor's own copies, checked against the log's `catalog-version` digests;
* a decision made under a grant records the grant's state (approved, expired, revoked,
  purpose, categories, coverage) and is replayed exactly; an older entry that records
  only the grant id is replayed with the most permissive grant (approved, covering the
  subject, purpose and every category):
  only an allow the policy denies even then is flagged, never a deny;
* `administer` decisions are decided on the setting the entry names, or on
  `principals`, the one setting the gateway decides them on;
* the time is the entry's time (to the second), for policies that read it.
"""

from __future__ import annotations

import calendar
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from domicile.catalog.catalog import Catalog
from domicile.errors import ConfigError, DomicileError
from domicile.monitor.shapes import Shape
from domicile.policy.config import PolicyConfig
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import (
    CATEGORIES,
    NO_GRANT,
    CedarRequest,
    GrantState,
    PolicyContext,
    PolicyPrincipal,
    PolicyRequest,
    SettingResource,
)
from domicile.policy.places import locate
from domicile.policy.record import texts_of
from domicile.policy.snapshot import PolicySource, build_snapshot
from domicile.residency.topology import Topology

IMPLICIT_PURPOSE = "service"
"""The purpose the gateway decides register, write, erase, relocate and administer with."""

_IMPLICIT_PURPOSE_ACTIONS = frozenset({"register", "write", "erase", "relocate", "administer"})

SHAPE_REPLAYS = 64
"""Outcomes kept per shape (seconds of entry time, which moves on): past this it starts again."""

ADMIN_SETTING = "principals"
"""The setting the gateway decides `administer` on (its only one), unless the entry says."""


@dataclass(frozen=True)
class Outcome:
    """What the replay found for one decision."""

    replayed: bool
    mismatch: str = ""
    """`allow-against-policy`, `deny-against-policy` or empty."""
    detail: str = ""


def engine_from_record(record: Mapping[str, Any]) -> PolicyEngine:
    """Rebuild the engine of a `policy-version` entry; ConfigError if it does not load."""
    document = record["config"]
    if not isinstance(document, Mapping):
        raise ConfigError("policy version record has no configuration")
    config = PolicyConfig(
        version=str(document["version"]),
        purposes=tuple(document["purposes"]),
        countries_of_concern=frozenset(document["countries_of_concern"]),
        security_entities=MappingProxyType(dict(document["security_entities"])),
        approval_steps=MappingProxyType(dict(document["approval_steps"])),
    )
    policies, schema = texts_of(record)  # as written, or compressed (a large set)
    snapshot = build_snapshot(
        PolicySource(policies, str(record.get("policies_origin", "<ledger>"))),
        PolicySource(schema, str(record.get("schema_origin", "<ledger>"))),
        config,
        generation=int(record.get("generation", 1)),
    )
    if snapshot.policy_hash != record.get("policy_hash"):
        raise ConfigError("policy version record does not hash to its recorded policy hash")
    return PolicyEngine(snapshot)


def entry_seconds(stamp: str) -> int:
    """Seconds since the epoch of an RFC 3339 UTC entry time (fractions dropped)."""
    return _seconds(stamp[:19])


@functools.lru_cache(maxsize=4096)
def _seconds(stamp: str) -> int:
    # Entries of one second share the parse: strptime costs more than a replay hit.
    try:
        return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


class Replayer:
    """Decides logged inputs again; keeps one engine per policy hash and a result cache."""

    def __init__(self, topology: Topology, catalog: Catalog) -> None:
        """Replay with this topology and catalog (they must be the gateway's)."""
        self.topology = topology
        self.catalog = catalog
        self.engines: dict[str, PolicyEngine] = {}
        self._cache: dict[tuple[Any, ...], tuple[bool, frozenset[str]]] = {}
        """Result by the decision-relevant values as logged (see `_key`)."""

    def add_version(self, record: Mapping[str, Any]) -> str:
        """Load a recorded policy version; return its hash."""
        policy_hash = str(record["policy_hash"])
        if policy_hash not in self.engines:
            self.engines[policy_hash] = engine_from_record(record)
        return policy_hash

    def countries_of_concern(self, policy_hash: str) -> frozenset[str]:
        """The countries of concern of a loaded version (empty if unknown)."""
        engine = self.engines.get(policy_hash)
        return engine.snapshot.config.countries_of_concern if engine else frozenset()

    def replay(self, entry: Mapping[str, Any]) -> Outcome:
        """Replay one decision entry against the version its policy hash names."""
        engine = self.engines.get(str(entry.get("policy_hash")))
        if engine is None:
            return Outcome(replayed=False, detail="policy version not recorded")
        try:
            key = _key(entry, engine.snapshot.uses_time)
        except (KeyError, TypeError, AttributeError) as exc:
            return Outcome(replayed=False, detail=f"input cannot be replayed: {exc}")
        known = self._cache.get(key)
        if known is None:
            try:
                known = self._decide(engine, entry, key)
            except (DomicileError, KeyError, TypeError, ValueError) as exc:
                return Outcome(replayed=False, detail=f"input cannot be replayed: {exc}")
        return _compare(entry, known[0], known[1], _with_grant_id(entry))

    def replay_shape(self, shape: Shape, time: str) -> Outcome:
        """Replay a decision of a known shape at `time` (shapes.py): the same as `replay`.

        The replay key is the shape's, with the time's second if the policy reads time,
        so a decision of a shape depends on nothing but its time to the second: the
        outcome is kept on the shape by that second ("" if the policy reads no time),
        and each entry looks its own second up there.
        """
        timed = shape.timed
        if timed is None:  # a version's policies never change once loaded
            engine = self.engines.get(shape.policy_hash)
            if engine is None:
                return Outcome(replayed=False, detail="policy version not recorded")
            timed = shape.timed = engine.snapshot.uses_time
        second = time[:19] if timed else ""
        outcome: Outcome | None = shape.replays.get(second)
        if outcome is None:
            engine = self.engines.get(shape.policy_hash)
            if engine is None:
                return Outcome(replayed=False, detail="policy version not recorded")
            outcome = self._replay_shape(engine, shape, time)
            if len(shape.replays) >= SHAPE_REPLAYS:
                shape.replays.clear()
            shape.replays[second] = outcome
        return outcome

    def _replay_shape(self, engine: PolicyEngine, shape: Shape, time: str) -> Outcome:
        base = shape.replay_key
        if base is None:
            try:
                base = shape.replay_key = _key(shape.template, False)
            except (KeyError, TypeError, AttributeError) as exc:
                return Outcome(replayed=False, detail=f"input cannot be replayed: {exc}")
        key = (*base[:-1], entry_seconds(time)) if engine.snapshot.uses_time else base
        known = self._cache.get(key)
        if known is None:
            try:
                known = self._decide(engine, {**shape.template, "time": time}, key)
            except (DomicileError, KeyError, TypeError, ValueError) as exc:
                return Outcome(replayed=False, detail=f"input cannot be replayed: {exc}")
        outcome: Outcome | None = shape.outcomes.get(known)
        if outcome is None:
            template = shape.template
            outcome = shape.outcomes[known] = _compare(template, *known, _with_grant_id(template))
        return outcome

    def _decide(
        self, engine: PolicyEngine, entry: Mapping[str, Any], key: tuple[Any, ...]
    ) -> tuple[bool, frozenset[str]]:
        """Decide the entry's input again and cache the result under `key`."""
        request = self._request(entry)
        if request.action == "administer":
            setting = entry["input"]["resource"].get("setting") or ADMIN_SETTING
            verdict = engine.decide(_admin_request(request, setting)).verdict
            known: tuple[bool, frozenset[str]] = (verdict.allowed, frozenset())
        else:
            decision = engine.decide_fields(request)
            known = (decision.allowed, frozenset(decision.allowed_fields))
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[key] = known
        return known

    def _request(self, entry: Mapping[str, Any]) -> PolicyRequest:
        data = entry["input"]
        principal, resource, context = data["principal"], data["resource"], data["context"]
        country, jurisdiction, region = locate(self.topology, principal["country"])
        action = str(entry["action"])
        purpose = context.get("purpose") or (
            IMPLICIT_PURPOSE if action in _IMPLICIT_PURPOSE_ACTIONS else ""
        )
        source, src_jurisdiction, src_region = locate(
            self.topology, context.get("source_country") or principal["country"]
        )
        grant_id = context.get("grant")
        state = context.get("grant_state")
        if grant_id and isinstance(state, dict):  # recorded as the policy saw it: exact
            grant = GrantState.from_record({**state, "id": grant_id})
        else:
            grant = (
                GrantState(grant_id, True, False, False, purpose, frozenset(CATEGORIES), True)
                if grant_id
                else NO_GRANT
            )
        names = resource["fields"] or sorted(self.catalog.fields)
        fields = {name: self.catalog.field(name).category.value for name in sorted(names)}
        home = str(resource["region"])
        agreement = context.get("transfer_agreement") or ""
        return PolicyRequest(
            principal=PolicyPrincipal(
                principal["id"],
                principal["entity"],
                country,
                jurisdiction,
                region,
                frozenset(principal["roles"]),
            ),
            action=action,
            home_region=home,
            home_jurisdiction=self.topology.region(home).jurisdiction,
            fields=MappingProxyType(fields),
            context=PolicyContext(
                purpose=purpose,
                source_country=source,
                source_jurisdiction=src_jurisdiction,
                source_region=src_region,
                grant=grant,
                break_glass=bool(context.get("break_glass")),
                transfer_agreement=agreement,
                transforms_applied=bool(context.get("transforms_applied")),
                destination_country=str(context.get("destination_country") or ""),
                time=entry_seconds(str(entry.get("time", ""))),
            ),
        )


def _with_grant_id(entry: Mapping[str, Any]) -> bool:
    """Only a grant replayed from its id alone is approximate (older entries)."""
    context = entry["input"]["context"]
    return bool(context.get("grant")) and not isinstance(context.get("grant_state"), dict)


def _admin_request(request: PolicyRequest, setting: str) -> CedarRequest:
    """An `administer` decision's evaluation: the setting is its resource, and the
    context holds no grant, break glass or transfer (as the gateway's adapter builds it)."""
    context = replace(
        request.context, grant=NO_GRANT, break_glass=False, transfer_agreement="",
        transforms_applied=False, destination_country="",
    )  # fmt: skip
    return CedarRequest(request.principal, "administer", SettingResource(setting), context)


def _key(entry: Mapping[str, Any], with_time: bool) -> tuple[Any, ...]:
    """Every logged value the replayed decision depends on, as a hashable tuple.

    It is what `_request` reads, taken as logged (before normalising): two entries
    with the same key build the same request, so they get the same result.
    """
    data = entry["input"]
    principal, resource, context = data["principal"], data["resource"], data["context"]
    state = context.get("grant_state")
    return (
        entry["policy_hash"],
        entry["action"],
        principal["id"],
        principal["entity"],
        principal["country"],
        tuple(principal["roles"]),
        resource["region"],
        tuple(resource["fields"]),
        resource.get("setting"),
        context.get("purpose"),
        context.get("source_country"),
        context.get("grant"),
        tuple(sorted((k, repr(v)) for k, v in state.items())) if isinstance(state, dict) else state,
        bool(context.get("break_glass")),
        context.get("transfer_agreement"),
        bool(context.get("transforms_applied")),
        context.get("destination_country"),
        entry_seconds(str(entry.get("time", ""))) if with_time else None,
    )


def _compare(
    entry: Mapping[str, Any], allowed: bool, fields: frozenset[str], with_grant: bool
) -> Outcome:
    recorded_allow = entry.get("result") == "allow"
    requested = set(entry["input"]["resource"]["fields"])
    recorded_fields = set(entry.get("allowed_fields") or ())
    if recorded_allow:
        if not allowed:
            return Outcome(True, "allow-against-policy", "the recorded policy denies it")
        extra = recorded_fields - (fields & requested)
        if extra:
            return Outcome(
                True, "allow-against-policy", f"fields the policy withholds: {sorted(extra)}"
            )
        return Outcome(True)
    if allowed and not with_grant and entry.get("action") != "transfer":
        return Outcome(True, "deny-against-policy", "the recorded policy allows it")
    return Outcome(True)
