"""The decider's front cache (whole decision by its input) agrees with uncached Cedar."""

from __future__ import annotations

import random

from domicile.catalog.catalog import load_catalog
from domicile.gateway.request import AccessRequest, Action
from domicile.policy.adapter import CedarDecider
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import NO_GRANT, GrantState
from domicile.principals.store import Principal
from domicile.residency.topology import load_topology

ENTITIES = ["Shop EU Ltd", "Trusted Security Partner EU", "Trusted Security Partner US", "X"]
ROLES = ["service", "officer", "analyst", "admin", "approver", "support"]
COUNTRIES = ["IE", "DE", "NO", "US", "SG", "RU", "HK", "BR"]
PURPOSES = ["service", "support", "security", "legal", "analytics", "curiosity", None]
ACTIONS = [
    Action.READ,
    Action.WRITE,
    Action.EXPORT,
    Action.ERASE,
    Action.REGISTER,
    Action.BREAK_GLASS,
    Action.APPROVE,
]


def _random_request(rng: random.Random, fields: list[str]) -> AccessRequest:
    principal = Principal(
        f"p{rng.randrange(6)}",
        rng.choice(ENTITIES),
        rng.choice(COUNTRIES),
        frozenset(rng.sample(ROLES, rng.randrange(1, 3))),
        "2026-01-01",
    )
    grant = (
        NO_GRANT
        if rng.random() < 0.6
        else GrantState(
            id=f"g{rng.randrange(3)}",
            approved=rng.random() < 0.8,
            expired=rng.random() < 0.2,
            revoked=rng.random() < 0.2,
            purpose=rng.choice(["security", "legal"]),
            categories=frozenset(rng.sample(["restricted", "allowable"], rng.randrange(1, 3))),
            covers_subject=rng.random() < 0.8,
        )
    )
    return AccessRequest(
        principal, rng.choice(ACTIONS), rng.choice(["eu-ie", "eu-no", "us", "ap-sg"]),
        f"{rng.randrange(16**32):032x}", frozenset(rng.sample(fields, rng.randrange(1, 5))),
        rng.choice(PURPOSES), source_country=rng.choice([None, *COUNTRIES]),
        break_glass=rng.random() < 0.1, grant=grant,
    )  # fmt: skip


def test_front_cache_matches_uncached_cedar_over_random_requests() -> None:
    topology, catalog, engine = load_topology(), load_catalog(), PolicyEngine.load()
    cached = CedarDecider(engine, topology, catalog)
    direct = CedarDecider(engine, topology, catalog, use_cache=False)
    rng = random.Random(20261123)
    fields = list(catalog.fields)
    requests = [_random_request(rng, fields) for _ in range(400)]
    ids = set()
    for request in requests * 5:  # repeats make the front cache hit
        got, want = cached.decide(request), direct.decide(request)
        assert (got.allowed, got.allowed_fields, got.withheld, got.policy_ids, got.break_glass) == (
            want.allowed,
            want.allowed_fields,
            want.withheld,
            want.policy_ids,
            want.break_glass,
        )
        assert got.decision_id not in ids  # every decision keeps its own id
        ids.add(got.decision_id)
    before = engine.policy_hash
    engine.reload(engine.snapshot.policies.text.replace('"support"]', '"legal"]'))
    assert engine.policy_hash != before
    for request in requests:
        got, want = cached.decide(request), direct.decide(request)
        assert (got.allowed, got.allowed_fields, got.policy_hash) == (
            want.allowed,
            want.allowed_fields,
            want.policy_hash,
        )
