"""The decision cache: keyed on exactly the decision-relevant attributes, invalidated on
policy reload, grant change and principal change, and equal to direct Cedar decisions."""

from __future__ import annotations

import random
import threading
from dataclasses import replace

from policy_support import PRINCIPALS, Ask, context, grant, principal

from domicile.policy.cache import DecisionCache
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import (
    NO_GRANT,
    CedarRequest,
    DataResource,
    GrantState,
    PolicyRequest,
    SettingResource,
)
from domicile.policy.snapshot import default_policies
from domicile.residency.topology import Topology

POLICIES = default_policies().text
LOCKDOWN = POLICIES + '\n@id("lockdown")\nforbid (principal, action, resource);\n'
TIMED = (
    POLICIES
    + """
@id("after-hours")
forbid (principal, action, resource is Domicile::Data) when { context.time >= 2 };
"""
)


def test_a_repeated_request_is_a_hit_with_a_fresh_id(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load())
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    first, second = cache.decide(request), cache.decide(request)
    assert (cache.misses, cache.hits) == (1, 1)
    assert first.verdict is second.verdict
    assert first.decision_id != second.decision_id


def test_subject_id_is_not_in_the_key(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load())
    base = ask("svc_ie", "read", "eu-ie", "", "service")
    fields = {"email": "restricted", "username": "public"}
    for subject in ("a" * 32, "b" * 32, "c" * 32):
        request = PolicyRequest(
            base.principal, "read", "eu-ie", "eea", fields, base.context, subject
        )
        assert cache.decide_fields(request).allowed_fields == set(fields)
    assert (cache.misses, cache.hits) == (2, 4)


def test_decide_and_decide_fields_share_entries(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load())
    base = ask("svc_ie", "read", "eu-ie", "", "service")
    fields = {"email": "restricted", "username": "public"}
    request = PolicyRequest(base.principal, "read", "eu-ie", "eea", fields, base.context)
    cache.decide(request.for_category("restricted"))
    cache.decide_fields(request)
    cache.decide(request.for_category("public"))
    assert (cache.misses, cache.hits) == (2, 2)


def test_every_decision_relevant_attribute_is_in_the_key(ask: Ask, topology: Topology) -> None:
    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    request = ask("analyst_ie", "read", "eu-ie", "restricted", "safety", grant_state=grant())
    assert cache.decide(request).allowed
    assert isinstance(request.resource, DataResource)
    variants = [
        replace(request, action="export"),
        replace(request, resource=replace(request.resource, category="allowable")),
        replace(request, resource=replace(request.resource, home_region="eu-no")),
        replace(request, principal=replace(request.principal, entity="Someone Else")),
        replace(request, principal=replace(request.principal, roles=frozenset({"officer"}))),
        replace(request, principal=replace(request.principal, country="US")),
        replace(request, context=replace(request.context, purpose="legal")),
        replace(request, context=replace(request.context, source_country="CN")),
        replace(request, context=replace(request.context, grant=grant(revoked=True))),
        replace(request, context=replace(request.context, grant=grant(expired=True))),
        replace(request, context=replace(request.context, grant=replace(grant(), id="g-9"))),
    ]
    for variant in variants:
        assert cache.decide(variant).verdict == engine.decide(variant).verdict
    assert cache.misses == 1 + len(variants)
    assert cache.hits == 0


def test_reload_invalidates(ask: Ask) -> None:
    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    assert cache.decide(request).allowed
    engine.reload(LOCKDOWN)
    after = cache.decide(request)
    assert not after.allowed
    assert after.policy_hash == engine.policy_hash
    assert len(cache) == 1  # the old version's entries were dropped


def test_grant_change_invalidates(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load())
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    cache.decide(request)
    cache.invalidate_grants()
    cache.decide(request)
    assert (cache.misses, cache.hits) == (2, 0)


def test_principal_change_invalidates(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load())
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    other = ask("svc_de", "read", "eu-ie", "restricted", "service")
    cache.decide(request)
    cache.decide(other)
    cache.invalidate_principal("svc_ie")
    cache.decide(request)
    cache.decide(other)
    assert (cache.misses, cache.hits) == (3, 1)
    # The principal store's own generation counts too.
    cache.decide(ask("svc_ie", "read", "eu-ie", "restricted", "service", generation=7))
    assert cache.misses == 4


def test_time_is_in_the_key_only_when_a_policy_reads_it(ask: Ask) -> None:
    plain = DecisionCache(PolicyEngine.load())
    for second in range(4):
        plain.decide(ask("svc_ie", "read", "eu-ie", "public", "service", time=second))
    assert plain.misses == 1
    timed = DecisionCache(PolicyEngine.load(TIMED))
    answers = [
        timed.decide(ask("svc_ie", "read", "eu-ie", "public", "service", time=second)).allowed
        for second in range(4)
    ]
    assert answers == [True, True, False, False]
    assert timed.misses == 4


def test_the_table_is_bounded(ask: Ask) -> None:
    cache = DecisionCache(PolicyEngine.load(), max_entries=3)
    for second in range(10):
        cache.decide(ask("svc_ie", "read", "eu-ie", "public", f"p{second}"))
        assert len(cache) <= 3


# --- differential: cached decisions equal direct Cedar decisions ------------------------

REGIONS = ("eu-ie", "eu-no", "us", "ap-sg", "nowhere")
CATEGORIES = ("restricted", "allowable", "public", "aggregate")
ACTIONS = ("read", "write", "export", "erase", "register", "relocate", "break_glass", "transfer")
PURPOSES = ("service", "support", "safety", "security", "legal", "marketing", "", "curiosity")
SOURCES = (None, "IE", "NO", "US", "SG", "RU", "HK", "ZZ")


def _random_grant(rng: random.Random) -> GrantState:
    if rng.random() < 0.4:
        return NO_GRANT
    return GrantState(
        id=rng.choice(("g-1", "g-2")),
        approved=rng.random() < 0.8,
        expired=rng.random() < 0.2,
        revoked=rng.random() < 0.2,
        purpose=rng.choice(PURPOSES[:6]),
        categories=frozenset(rng.sample(CATEGORIES[:3], rng.randint(0, 3))),
        covers_subject=rng.random() < 0.8,
    )


def _random_request(rng: random.Random, topology: Topology) -> CedarRequest:
    who = rng.choice(sorted(PRINCIPALS))
    actor = principal(topology, who, generation=rng.choice((0, 0, 0, 1)))
    ctx = context(
        topology,
        rng.choice(PURPOSES),
        rng.choice(SOURCES) or PRINCIPALS[who][1],
        grant_state=_random_grant(rng),
        break_glass=rng.random() < 0.2,
        agreement=rng.choice(("", "", "ta-1")),
        transforms=rng.random() < 0.5,
        destination=rng.choice(("", "", "US", "CN")),
        time=rng.randint(0, 3),
    )
    if rng.random() < 0.05:
        setting = rng.choice(("principals", "policies"))
        return CedarRequest(actor, "administer", SettingResource(setting), ctx)
    region = rng.choice(REGIONS)
    known = topology.regions.get(region)
    resource = DataResource(region, known.jurisdiction if known else "", rng.choice(CATEGORIES))
    return CedarRequest(actor, rng.choice(ACTIONS), resource, ctx)


def test_cached_decisions_equal_direct_decisions(topology: Topology) -> None:
    """Thousands of random requests, with reloads and invalidations along the way."""
    rng = random.Random(20240604)
    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    versions = [POLICIES, LOCKDOWN, TIMED]
    pool = [_random_request(rng, topology) for _ in range(800)]
    compared = 0
    for step in range(6000):
        if step % 1000 == 999:
            engine.reload(versions[(step // 1000) % len(versions)])
        if step % 700 == 350:
            cache.invalidate_grants()
        if step % 500 == 250:
            cache.invalidate_principal(rng.choice(sorted(PRINCIPALS)))
        request = rng.choice(pool)
        cached = cache.decide(request)
        direct = engine.decide(request)
        assert cached.verdict == direct.verdict, (step, request)
        assert cached.policy_hash == direct.policy_hash
        compared += 1
    assert compared == 6000
    assert cache.hits > 1000  # the pool repeats, so most requests were served cached


def test_cached_field_decisions_equal_direct_ones(topology: Topology) -> None:
    rng = random.Random(7)
    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    fields = {"email": "restricted", "bio": "allowable", "username": "public"}
    for step in range(1500):
        if step == 700:
            engine.reload(LOCKDOWN)
        base = _random_request(rng, topology)
        if not isinstance(base.resource, DataResource):
            continue
        chosen = dict(rng.sample(sorted(fields.items()), rng.randint(1, 3)))
        request = PolicyRequest(
            base.principal,
            base.action,
            base.resource.home_region,
            base.resource.home_jurisdiction,
            chosen,
            base.context,
            subject_id=rng.choice(("a" * 32, "b" * 32)),
        )
        for _ in range(2):
            cached, direct = cache.decide_fields(request), engine.decide_fields(request)
            assert dict(cached.verdicts) == dict(direct.verdicts)
            assert cached.allowed_fields == direct.allowed_fields
            assert dict(cached.withheld) == dict(direct.withheld)
            assert cached.allowed == direct.allowed


def test_the_cache_under_concurrent_reloads_never_serves_a_stale_version(ask: Ask) -> None:
    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    open_hash = engine.policy_hash
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    stop = threading.Event()

    def flip() -> None:
        index = 0
        while not stop.is_set():
            engine.reload([LOCKDOWN, POLICIES][index % 2])
            index += 1

    writer = threading.Thread(target=flip)
    writer.start()
    try:
        for _ in range(3000):
            decision = cache.decide(request)
            assert decision.allowed == (decision.policy_hash == open_hash)
    finally:
        stop.set()
        writer.join()
