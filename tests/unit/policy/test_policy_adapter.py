"""CedarDecider: the gateway's Decider on Cedar, from AccessRequest to Decision."""

from __future__ import annotations

import pytest

from domicile.catalog.catalog import Catalog, Category
from domicile.errors import ConfigError, UnknownField, UnknownRegion
from domicile.gateway.request import AccessRequest, Action
from domicile.policy.adapter import (
    IMPLICIT_PURPOSE,
    CedarDecider,
    to_admin_request,
    to_policy_request,
)
from domicile.policy.cache import DecisionCache
from domicile.policy.config import parse_policy_config
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import SettingResource
from domicile.principals.store import Principal
from domicile.residency.topology import Topology

NOW = "2024-06-01T00:00:00+00:00"
SVC_EU = Principal("svc-eu", "Domicile EU Ltd", "IE", frozenset({"service"}), NOW)
SVC_US = Principal("svc-us", "Domicile US Inc", "US", frozenset({"service"}), NOW)
ADMIN = Principal("admin", "operator", "IE", frozenset({"admin"}), NOW)
SUPPORT_IE = Principal("help-ie", "Domicile EU Ltd", "IE", frozenset({"support"}), NOW)
OFFICER = Principal("sec-ie", "Trusted Security Partner EU", "IE", frozenset({"officer"}), NOW)


@pytest.fixture
def decider(engine: PolicyEngine, topology: Topology, catalog: Catalog) -> CedarDecider:
    return CedarDecider(engine, topology, catalog)


def read(
    who: Principal,
    region: str,
    fields: frozenset[str] = frozenset(),
    purpose: str | None = "service",
) -> AccessRequest:
    return AccessRequest(who, Action.READ, region, "a" * 32, fields, purpose)


@pytest.mark.parametrize(("country", "region"), [("IE", "eu-ie"), ("DE", "eu-ie"), ("NO", "eu-no")])
def test_an_eu_service_reads_eu_subjects(
    decider: CedarDecider, topology: Topology, catalog: Catalog, country: str, region: str
) -> None:
    assert topology.home_region(country) == region
    everything = frozenset(catalog.fields)
    decision = decider.decide(read(SVC_EU, region, everything))
    assert decision.allowed
    assert decision.allowed_fields == everything
    assert decision.withheld == {}
    assert "service-in-home-jurisdiction" in decision.policy_ids


def test_a_us_service_reading_an_eu_subject_is_denied(
    decider: CedarDecider, catalog: Catalog
) -> None:
    decision = decider.decide(read(SVC_US, "eu-ie", frozenset(catalog.fields), "support"))
    assert not decision.allowed
    assert decision.allowed_fields == frozenset()
    assert set(decision.withheld) == set(catalog.fields)
    assert "restricted-never-outside-region" in decision.withheld["email"]
    assert decision.policy_ids


def test_a_read_is_served_in_part(decider: CedarDecider, catalog: Catalog) -> None:
    public = frozenset(catalog.fields_in(Category.PUBLIC))
    decision = decider.decide(read(SUPPORT_IE, "eu-no", frozenset(catalog.fields), "support"))
    assert decision.allowed
    assert decision.allowed_fields == public
    assert set(decision.withheld) == set(catalog.fields) - public


def test_export_is_all_or_nothing(decider: CedarDecider, catalog: Catalog) -> None:
    request = AccessRequest(
        SUPPORT_IE, Action.EXPORT, "eu-ie", "a" * 32, frozenset(catalog.fields), "support"
    )
    decision = decider.decide(request)
    assert not decision.allowed
    assert decision.allowed_fields == frozenset()


def test_unknown_or_missing_purpose_is_denied(decider: CedarDecider) -> None:
    fields = frozenset({"email"})
    assert not decider.decide(read(SVC_EU, "eu-ie", fields, "curiosity")).allowed
    assert not decider.decide(read(SVC_EU, "eu-ie", fields, None)).allowed
    assert decider.decide(read(SVC_EU, "eu-ie", fields, "support")).allowed


@pytest.mark.parametrize("action", [Action.REGISTER, Action.WRITE, Action.ERASE, Action.RELOCATE])
def test_actions_without_a_purpose_get_the_implicit_one(
    decider: CedarDecider, topology: Topology, catalog: Catalog, action: Action
) -> None:
    request = AccessRequest(SVC_EU, action, "eu-ie", "a" * 32)
    policy_request = to_policy_request(request, topology, catalog, now=0)
    assert policy_request.context.purpose == IMPLICIT_PURPOSE
    # A request naming no field is decided over the whole record.
    assert set(policy_request.fields) == set(catalog.fields)
    assert decider.decide(request).allowed


def test_any_service_registers_anywhere_but_writes_only_at_home(decider: CedarDecider) -> None:
    assert decider.decide(AccessRequest(SVC_US, Action.REGISTER, "eu-ie")).allowed
    write = AccessRequest(SVC_US, Action.WRITE, "eu-ie", "a" * 32, frozenset({"bio"}))
    assert not decider.decide(write).allowed


def test_administration(decider: CedarDecider, topology: Topology) -> None:
    assert decider.decide(AccessRequest(ADMIN, Action.ADMINISTER, "eu-ie")).allowed
    assert not decider.decide(AccessRequest(SVC_EU, Action.ADMINISTER, "eu-ie")).allowed
    admin_read = decider.decide(read(ADMIN, "eu-ie", frozenset({"username"}), "support"))
    assert not admin_read.allowed
    assert admin_read.policy_ids == ("admin-never-touches-personal-data",)
    admin = to_admin_request(
        AccessRequest(ADMIN, Action.ADMINISTER, "eu-ie"), topology, setting="catalog", now=5
    )
    assert admin.resource == SettingResource("catalog")
    assert admin.context.time == 5


def test_source_country_can_only_narrow(decider: CedarDecider) -> None:
    fields = frozenset({"email"})
    assert not decider.decide(read(SVC_EU, "eu-ie", fields)).withheld
    claimed = decider.evaluate(read(SVC_US, "eu-ie", fields), source_country="IE")
    assert not claimed.allowed
    away = decider.evaluate(read(SVC_EU, "eu-ie", fields), source_country="US")
    assert not away.allowed
    concern = decider.evaluate(read(SVC_EU, "eu-ie", fields), source_country="RU")
    assert "countries-of-concern" in concern.policy_ids


def test_break_glass_is_reported_for_the_alert(decider: CedarDecider) -> None:
    request = read(OFFICER, "eu-ie", frozenset({"email", "bio"}), "safety")
    assert not decider.decide(request).allowed
    result = decider.evaluate(request, break_glass=True)
    assert result.allowed
    assert result.break_glass
    assert result.log_record()["result"]["break_glass"] is True


def test_an_unknown_principal_country_is_denied_not_raised(decider: CedarDecider) -> None:
    nowhere = Principal("lost", "Domicile EU Ltd", "ZZ", frozenset({"service"}), NOW)
    decision = decider.decide(read(nowhere, "eu-ie", frozenset({"username"})))
    assert not decision.allowed


def test_unknown_region_or_field_is_a_caller_error(decider: CedarDecider) -> None:
    with pytest.raises(UnknownRegion):
        decider.decide(read(SVC_EU, "mars", frozenset({"email"})))
    with pytest.raises(UnknownField):
        decider.decide(read(SVC_EU, "eu-ie", frozenset({"shoe_size"})))


def test_the_decider_caches_by_default(
    engine: PolicyEngine, topology: Topology, catalog: Catalog
) -> None:
    decider = CedarDecider(engine, topology, catalog)
    assert isinstance(decider.cache, DecisionCache)
    decider.decide(read(SVC_EU, "eu-ie", frozenset({"email"})))
    decider.decide(read(SVC_EU, "eu-ie", frozenset({"phone"})))
    assert (decider.cache.misses, decider.cache.hits) == (1, 1)
    assert CedarDecider(engine, topology, catalog, use_cache=False).cache is None


def test_every_topology_region_needs_a_security_entity(
    topology: Topology, catalog: Catalog
) -> None:
    config = parse_policy_config(
        'version = "1"\npurposes = ["service"]\n[security_entities]\neu-ie = "P"\n'
    )
    with pytest.raises(ConfigError, match="no security entity for `ap-sg`, `eu-no`, `us`"):
        CedarDecider(PolicyEngine.load(config=config), topology, catalog)
