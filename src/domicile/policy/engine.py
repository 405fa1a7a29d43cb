"""The policy engine: Cedar policies over principal, action, resource and context.

:class:`PolicyEngine` holds one :class:`~domicile.policy.snapshot.PolicySnapshot` and
decides requests against it. Three rules make it safe to put in front of personal data:

* **Fail closed.** Only a Cedar ``Allow`` with no evaluation error is an allow. Cedar
  skips a policy whose evaluation errors — a ``forbid`` included — and decides on the
  rest, so an erroring ``forbid`` could otherwise let a request through. Any error,
  in any policy or in building the request, is a deny naming the failing policies.
* **One version per decision.** Every evaluation reads the snapshot reference once and
  uses only that snapshot; :meth:`PolicyEngine.reload` builds a complete new snapshot
  and swaps it in with one assignment. A bad file raises ConfigError and changes nothing.
* **Field level.** :meth:`PolicyEngine.decide_fields` evaluates once per data category
  among the requested fields (in one Cedar batch), so a read gets exactly the allowed
  fields and a reason, naming the determining policies, for every withheld one.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

import cedarpy

from domicile.errors import ConfigError
from domicile.policy.config import PolicyConfig, load_policy_config
from domicile.policy.model import (
    PARTIAL_ACTIONS,
    CedarRequest,
    DataResource,
    FieldDecision,
    PolicyContext,
    PolicyDecision,
    PolicyPrincipal,
    PolicyRequest,
    Verdict,
)
from domicile.policy.snapshot import (
    NAMESPACE,
    PolicySnapshot,
    PolicySource,
    build_snapshot,
    default_policies,
    default_schema,
    read_source,
)

__all__ = ["PolicyEngine", "assemble_fields", "new_decision_id", "new_decision_ids"]

_ERROR_POLICY = re.compile(r"policy `(policy\d+)`")


def new_decision_id() -> str:
    """Return a fresh decision id (128 random bits, hex)."""
    return secrets.token_hex(16)


def new_decision_ids(count: int) -> list[str]:
    """`count` fresh decision ids from one read of the system's random source."""
    pool = secrets.token_hex(16 * count)
    return [pool[at : at + 32] for at in range(0, 32 * count, 32)]


def _source(value: str | Path | PolicySource, what: str, origin: str) -> PolicySource:
    """Text is taken as is; a Path is read."""
    if isinstance(value, PolicySource):
        return value
    if isinstance(value, Path):
        return read_source(value, what)
    return PolicySource(value, origin)


# --- Cedar inputs ---------------------------------------------------------------------


def _uid(kind: str, entity_id: str) -> dict[str, str]:
    return {"type": f"{NAMESPACE}::{kind}", "id": entity_id}


def _ref(kind: str, entity_id: str) -> dict[str, dict[str, str]]:
    return {"__entity": _uid(kind, entity_id)}


def _principal_entity(principal: PolicyPrincipal) -> dict[str, object]:
    return {
        "uid": _uid("Principal", principal.id),
        "attrs": {
            "entity": principal.entity,
            "country": principal.country,
            "jurisdiction": principal.jurisdiction,
            "region": _ref("Region", principal.region),
            "roles": sorted(principal.roles),
        },
        "parents": [],
    }


def _resource_id(resource: DataResource) -> str:
    # Built from the attributes only: the entity never names a subject, and two
    # resources in one batch share an id exactly when they are the same.
    return f"{resource.home_region}/{resource.home_jurisdiction}/{resource.category}"


def _resource_entity(resource: DataResource) -> dict[str, object]:
    return {
        "uid": _uid("Data", _resource_id(resource)),
        "attrs": {
            "home_region": _ref("Region", resource.home_region),
            "home_jurisdiction": resource.home_jurisdiction,
            "category": resource.category,
        },
        "parents": [],
    }


def _context(context: PolicyContext) -> str:
    grant = context.grant
    return json.dumps(
        {
            "purpose": context.purpose,
            "source_country": context.source_country,
            "source_jurisdiction": context.source_jurisdiction,
            "source_region": _ref("Region", context.source_region),
            "grant": grant.record(),
            "break_glass": context.break_glass,
            "transfer_agreement": context.transfer_agreement,
            "transforms_applied": context.transforms_applied,
            "destination_country": context.destination_country,
            "time": context.time,
        }
    )


def _cedar_request(request: CedarRequest) -> dict[str, object]:
    resource = request.resource
    return {
        "principal": _uid("Principal", request.principal.id),
        "action": _uid("Action", request.action),
        "resource": (
            _uid("Data", _resource_id(resource))
            if isinstance(resource, DataResource)
            else _uid("Setting", resource.name)
        ),
        "context": _context(request.context),
    }


def _entities(snapshot: PolicySnapshot, requests: Sequence[CedarRequest]) -> cedarpy.Entities:
    """The snapshot's base entities plus the principal and resources of `requests`.

    Raises ValueError when one id would stand for two different entities (two
    principals with one id), which the caller turns into a fail-closed deny.
    """
    delta: dict[tuple[str, str], dict[str, object]] = {}
    for request in requests:
        entities = [(("Principal", request.principal.id), _principal_entity(request.principal))]
        if isinstance(request.resource, DataResource):
            resource_id = _resource_id(request.resource)
            entities.append((("Data", resource_id), _resource_entity(request.resource)))
        for uid, entity in entities:
            if delta.setdefault(uid, entity) != entity:
                raise ValueError(f"two different entities have the id `{uid[0]}::{uid[1]}`")
    return snapshot.base_entities.with_added_json_str(
        json.dumps(list(delta.values())), snapshot.schema_handle
    )


# --- verdicts -------------------------------------------------------------------------


def _position(cedar_id: str) -> int:
    """The position of a policy in its file, from Cedar's positional id `policyN`."""
    digits = cedar_id.removeprefix("policy")
    return int(digits) if digits.isdigit() else -1


def _listed(ids: Sequence[str]) -> str:
    return ", ".join(f"`{policy_id}`" for policy_id in ids)


def _what(request: CedarRequest) -> str:
    resource = request.resource
    target = (
        f"`{resource.category}` data in `{resource.home_region}`"
        if isinstance(resource, DataResource)
        else f"setting `{resource.name}`"
    )
    return f"`{request.action}` of {target}"


def _verdict(
    snapshot: PolicySnapshot, request: CedarRequest, result: cedarpy.AuthzResult
) -> Verdict:
    """Turn Cedar's answer into a verdict; anything but a clean Allow is a deny."""
    diagnostics = result.diagnostics
    cedar = result.decision.value
    # Cedar reports policies in no stable order; file order keeps log records stable.
    reasons = tuple(snapshot.policy_id(r) for r in sorted(diagnostics.reasons, key=_position))
    errors = tuple(
        _ERROR_POLICY.sub(lambda m: f"policy `{snapshot.policy_id(m.group(1))}`", e)
        for e in diagnostics.errors
    )
    if cedar == "Allow" and not errors:
        alert = any("break_glass" in snapshot.alerts.get(p, ()) for p in reasons)
        return Verdict(True, cedar, reasons, (), f"allowed by {_listed(reasons)}", alert)
    if errors:
        failing = tuple(
            dict.fromkeys(
                snapshot.policy_id(m.group(1))
                for e in diagnostics.errors
                for m in _ERROR_POLICY.finditer(e)
            )
        )
        # A forbid that matched still determines the deny; so do the failing policies,
        # and `fail-closed` marks that an error, not a policy, had the last word.
        forbids = reasons if cedar == "Deny" else ()
        ids = tuple(dict.fromkeys((*forbids, *failing, "fail-closed")))
        return Verdict(
            False,
            cedar,
            ids,
            errors,
            f"evaluation error in {_listed(failing or ids)}: {_what(request)} denied (fail closed)",
        )
    if reasons:
        return Verdict(False, cedar, reasons, (), f"{_what(request)} denied by {_listed(reasons)}")
    return Verdict(
        False,
        cedar,
        ("default-deny",),
        (),
        f"no policy permits {_what(request)} (default deny)",
    )


def _failed(request: CedarRequest, message: str) -> Verdict:
    """The verdict when Cedar could not even be asked: deny, with the cause as error."""
    error = " ".join(message.split())
    return Verdict(
        False,
        "NoDecision",
        ("fail-closed",),
        (error,),
        f"invalid request: {_what(request)} denied (fail closed)",
    )


def evaluate(snapshot: PolicySnapshot, requests: Sequence[CedarRequest]) -> list[Verdict]:
    """Evaluate `requests` against one snapshot in one Cedar batch; never raises for input."""
    if not requests:
        return []
    try:
        entities = _entities(snapshot, requests)
        results = cedarpy.is_authorized_batch(
            [_cedar_request(r) for r in requests],
            snapshot.policy_set,
            entities,
            snapshot.schema_handle,
        )
    except (ValueError, TypeError, RuntimeError) as exc:
        # Malformed input (e.g. one principal id with two sets of attributes) is denied,
        # not raised: the decision, with its error, still goes to the log.
        return [_failed(r, str(exc)) for r in requests]
    return [_verdict(snapshot, r, res) for r, res in zip(requests, results, strict=True)]


def assemble_fields(
    decision_id: str,
    request: PolicyRequest,
    policy_hash: str,
    verdicts: Mapping[str, Verdict],
) -> FieldDecision:
    """Combine per-category verdicts into a field-level decision.

    A read gets exactly the fields of the allowed categories. Every other action is all
    or nothing: one denied category withholds every field, so nothing can be smuggled
    out through an export or a write that mixes categories.
    """
    partial = request.action in PARTIAL_ACTIONS
    refused = next((v for v in verdicts.values() if not v.allowed), None)
    allowed: set[str] = set()
    withheld: dict[str, str] = {}
    for name, category in request.fields.items():
        verdict = verdicts[category]
        if not verdict.allowed:
            withheld[name] = verdict.reason
        elif refused is not None and not partial:
            withheld[name] = f"`{request.action}` is all or nothing: {refused.reason}"
        else:
            allowed.add(name)
    return FieldDecision(
        decision_id,
        request,
        policy_hash,
        MappingProxyType(dict(verdicts)),
        frozenset(allowed),
        MappingProxyType(withheld),
    )


def _fitting(snapshot: PolicySnapshot) -> PolicySnapshot:
    """The snapshot, once its schema has accepted the shape of request the gateway sends;
    ConfigError otherwise. A schema whose context lacks an attribute the gateway sets (one
    written for an earlier version, say) would otherwise fail every request closed."""
    region = min(snapshot.config.security_entities, default="")
    probe = CedarRequest(
        PolicyPrincipal("schema-probe", "", "", "", region, frozenset()),
        "read",
        DataResource(region, "", "public"),
        PolicyContext(),
    )
    (verdict,) = evaluate(snapshot, [probe])
    unbuilt = [error for error in verdict.errors if "policy" not in error]
    if unbuilt:
        raise ConfigError(
            f"schema `{snapshot.schema.origin}` does not fit the requests Domicile sends"
            f" (see docs/policies.md): {unbuilt[0]}"
        )
    return snapshot


# --- the engine -----------------------------------------------------------------------


class PolicyEngine:
    """Decides requests against the active policy snapshot; reload swaps it atomically."""

    def __init__(self, snapshot: PolicySnapshot) -> None:
        """Hold an already-built snapshot; `PolicyEngine.load` is the usual way in."""
        self._snapshot = snapshot
        self._reload_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        policies: str | Path | None = None,
        *,
        schema: str | Path | None = None,
        config: PolicyConfig | Path | None = None,
    ) -> PolicyEngine:
        """Load policies, schema and configuration (text, files, or the built-in defaults)."""
        snapshot = build_snapshot(
            default_policies()
            if policies is None
            else _source(policies, "policy file", "<policies>"),
            default_schema() if schema is None else _source(schema, "schema", "<schema>"),
            _config(config),
            generation=1,
        )
        return cls(_fitting(snapshot))

    @property
    def snapshot(self) -> PolicySnapshot:
        """The policy version in force."""
        return self._snapshot

    @property
    def policy_hash(self) -> str:
        """SHA-256 hex of the canonical policies, schema and configuration in force."""
        return self._snapshot.policy_hash

    def reload(
        self,
        policies: str | Path | None = None,
        *,
        schema: str | Path | None = None,
        config: PolicyConfig | Path | None = None,
    ) -> str:
        """Activate a new version and return its hash; what is not given is kept.

        A `str` is policy (or schema) text, a `Path` a file to read. If anything is
        wrong, ConfigError says why and the version in force stays active.
        """
        with self.reloading(policies, schema=schema, config=config) as snapshot:
            pass
        return snapshot.policy_hash

    @contextmanager
    def reloading(
        self,
        policies: str | Path | None = None,
        *,
        schema: str | Path | None = None,
        config: PolicyConfig | Path | None = None,
    ) -> Iterator[PolicySnapshot]:
        """`reload` in two steps: the block gets the new version, built and checked but not
        yet in force, to record it; the version is activated when the block ends, and not
        at all if the block raises (a version that could not be recorded never decides).
        One reload at a time, so generations stay ordered."""
        with self._reload_lock:
            current = self._snapshot
            snapshot = _fitting(
                build_snapshot(
                    current.policies
                    if policies is None
                    else _source(policies, "policy file", "<policies>"),
                    current.schema if schema is None else _source(schema, "schema", "<schema>"),
                    current.config if config is None else _config(config),
                    generation=current.generation + 1,
                )
            )
            yield snapshot
            self._snapshot = snapshot  # the one assignment that activates it

    def decide(self, request: CedarRequest) -> PolicyDecision:
        """Decide one evaluation."""
        snapshot = self._snapshot
        (verdict,) = evaluate(snapshot, [request])
        return PolicyDecision(new_decision_id(), request, verdict, snapshot.policy_hash)

    def decide_many(self, requests: Sequence[CedarRequest]) -> list[PolicyDecision]:
        """Decide several evaluations against one version (one Cedar call per principal)."""
        snapshot = self._snapshot
        verdicts: dict[int, Verdict] = {}
        by_principal: dict[PolicyPrincipal, list[int]] = {}
        for index, request in enumerate(requests):
            by_principal.setdefault(request.principal, []).append(index)
        for indices in by_principal.values():
            batch = [requests[i] for i in indices]
            verdicts.update(zip(indices, evaluate(snapshot, batch), strict=True))
        return [
            PolicyDecision(new_decision_id(), r, verdicts[i], snapshot.policy_hash)
            for i, r in enumerate(requests)
        ]

    def decide_fields(self, request: PolicyRequest) -> FieldDecision:
        """Decide a field-level request: one evaluation per category, one version."""
        snapshot = self._snapshot
        categories = request.categories()
        verdicts = evaluate(snapshot, [request.for_category(c) for c in categories])
        return assemble_fields(
            new_decision_id(),
            request,
            snapshot.policy_hash,
            dict(zip(categories, verdicts, strict=True)),
        )


def _config(config: PolicyConfig | Path | None) -> PolicyConfig:
    if isinstance(config, PolicyConfig):
        return config
    if config is None or isinstance(config, Path):
        return load_policy_config(config)
    raise ConfigError(f"policy configuration must be a file path, not `{type(config).__name__}`")
