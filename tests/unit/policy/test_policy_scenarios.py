"""The default policy set, scenario by scenario: principal kind × category × region ×
purpose × grant state, including attempts to get around each rule."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from policy_support import Ask, grant

from domicile.policy.config import load_policy_config
from domicile.policy.engine import PolicyEngine
from domicile.policy.model import GrantState


@dataclass(frozen=True)
class Case:
    """One scenario: a request and the decision it must get."""

    who: str
    action: str
    region: str
    category: str
    purpose: str
    allow: bool
    policies: frozenset[str] | None = None  # the exact determining ids, when given
    extra: dict[str, object] = field(default_factory=dict)


def c(
    who: str,
    action: str,
    region: str,
    category: str,
    purpose: str,
    allow: bool,
    *policies: str,
    **extra: object,
) -> Case:
    return Case(who, action, region, category, purpose, allow, frozenset(policies) or None, extra)


SERVICE = "service-in-home-jurisdiction"
REGISTER = "service-registers-anywhere"
ADMIN_FORBID = "admin-never-touches-personal-data"
STAFF = "security-staff-with-grant"
GLASS = "break-glass-officer"
ONLY = "restricted-only-service-or-security-staff"
OUTSIDE = "restricted-never-outside-region"
AGREEMENT = "allowable-outside-region-needs-agreement"
TRANSFER = "allowable-transfer-under-agreement"
CONCERN = "countries-of-concern"
PURPOSE = "purpose-must-be-known"
PUBLIC = "public-in-jurisdiction"
DEFAULT = "default-deny"

EXPIRED = grant(expired=True)
REVOKED = grant(revoked=True)
UNAPPROVED = grant(approved=False)
OTHER_SUBJECT = grant(covers_subject=False)
RESTRICTED_GRANT = grant(categories=("restricted",))
ALLOWABLE_GRANT = grant(categories=("allowable",))

SCENARIOS: dict[str, Case] = {
    # --- application services in the subject's jurisdiction -----------------------
    "svc-ie reads ie restricted for service": c(
        "svc_ie", "read", "eu-ie", "restricted", "service", True, SERVICE
    ),
    "svc-ie reads ie allowable for support": c(
        "svc_ie", "read", "eu-ie", "allowable", "support", True, SERVICE
    ),
    "svc-ie reads ie public": c(
        "svc_ie", "read", "eu-ie", "public", "service", True, SERVICE, PUBLIC
    ),
    "svc-de reads no restricted (same jurisdiction)": c(
        "svc_de", "read", "eu-no", "restricted", "support", True, SERVICE
    ),
    "svc-ie reads no restricted": c(
        "svc_ie", "read", "eu-no", "restricted", "service", True, SERVICE
    ),
    "svc-ie updates ie restricted": c(
        "svc_ie", "write", "eu-ie", "restricted", "service", True, SERVICE
    ),
    "svc-ie erases ie": c("svc_ie", "erase", "eu-ie", "restricted", "service", True, SERVICE),
    "svc-ie exports ie": c("svc_ie", "export", "eu-ie", "restricted", "service", True, SERVICE),
    "svc-ie relocates ie": c("svc_ie", "relocate", "eu-ie", "allowable", "service", True, SERVICE),
    "svc-us reads us restricted": c("svc_us", "read", "us", "restricted", "support", True, SERVICE),
    "svc-sg reads sg restricted": c(
        "svc_sg", "read", "ap-sg", "restricted", "support", True, SERVICE
    ),
    "svc-ie may not read for analytics": c(
        "svc_ie", "read", "eu-ie", "restricted", "analytics", False, DEFAULT
    ),
    "svc-ie may not read for marketing": c(
        "svc_ie", "read", "eu-ie", "allowable", "marketing", False, DEFAULT
    ),
    "svc-ie may not aggregate": c(
        "svc_ie", "aggregate", "eu-ie", "allowable", "service", False, DEFAULT
    ),
    "svc-ie may not transfer": c(
        "svc_ie", "transfer", "eu-ie", "allowable", "service", False, DEFAULT
    ),
    # --- purposes ---------------------------------------------------------------------
    "no purpose is denied": c("svc_ie", "read", "eu-ie", "restricted", "", False, PURPOSE),
    "unknown purpose is denied": c(
        "svc_ie", "read", "eu-ie", "restricted", "curiosity", False, PURPOSE
    ),
    "purpose is case-sensitive": c("svc_ie", "read", "eu-ie", "public", "SERVICE", False, PURPOSE),
    # --- services outside the subject's jurisdiction ----------------------------------
    "svc-us reads eu restricted": c(
        "svc_us", "read", "eu-ie", "restricted", "support", False, ONLY, OUTSIDE
    ),
    "svc-us reads eu allowable": c(
        "svc_us", "read", "eu-ie", "allowable", "support", False, AGREEMENT
    ),
    "svc-us reads eu public": c("svc_us", "read", "eu-ie", "public", "support", False, DEFAULT),
    "svc-us registers an eu subject": c(
        "svc_us", "register", "eu-ie", "restricted", "service", True, REGISTER
    ),
    "svc-us may not update an eu subject": c(
        "svc_us", "write", "eu-ie", "restricted", "service", False, DEFAULT
    ),
    "svc-us may not erase an eu subject": c(
        "svc_us", "erase", "eu-no", "restricted", "service", False, DEFAULT
    ),
    "svc-us may not export an eu subject": c(
        "svc_us", "export", "eu-ie", "allowable", "service", False, AGREEMENT
    ),
    "svc-us claiming an irish source is still denied": c(
        "svc_us", "read", "eu-ie", "allowable", "support", False, AGREEMENT, source="IE"
    ),
    "svc-ie calling from the us is denied": c(
        "svc_ie", "read", "eu-ie", "restricted", "support", False, ONLY, OUTSIDE, source="US"
    ),
    "svc-ie calling from an unknown country is denied": c(
        "svc_ie", "read", "eu-ie", "restricted", "support", False, ONLY, OUTSIDE, source="ZZ"
    ),
    "a principal in no jurisdiction is denied": c(
        "nowhere", "read", "eu-ie", "public", "support", False, DEFAULT
    ),
    # --- countries of concern ------------------------------------------------------
    "svc-cn may not register restricted": c(
        "svc_cn", "register", "ap-sg", "restricted", "service", False, CONCERN
    ),
    "svc-cn may not read allowable in its own jurisdiction": c(
        "svc_cn", "read", "ap-sg", "allowable", "service", False, CONCERN
    ),
    "svc-cn reads public in its jurisdiction": c(
        "svc_cn", "read", "ap-sg", "public", "service", True, SERVICE, PUBLIC
    ),
    "svc-sg calling from russia gets no restricted": c(
        "svc_sg", "read", "ap-sg", "restricted", "support", False, CONCERN, source="RU"
    ),
    "svc-sg calling from hong kong gets no allowable": c(
        "svc_sg", "read", "ap-sg", "allowable", "support", False, CONCERN, source="HK"
    ),
    "engineer in macao gets nothing under an agreement": c(
        "engineer_mo",
        "read",
        "eu-ie",
        "allowable",
        "support",
        False,
        CONCERN,
        agreement="ta-1",
        transforms=True,
    ),
    # --- administrators --------------------------------------------------------------
    "admin administers principals": c(
        "admin_ie", "administer", "principals", "", "", True, "admin-administers"
    ),
    "admin administers agreements": c(
        "admin_ie", "administer", "agreements", "", "", True, "admin-administers"
    ),
    "service does not administer": c("svc_ie", "administer", "policies", "", "", False, DEFAULT),
    "admin never reads public data": c(
        "admin_ie", "read", "eu-ie", "public", "support", False, ADMIN_FORBID
    ),
    "admin never reads, even with a grant": c(
        "admin_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        ADMIN_FORBID,
        ONLY,
        grant_state=grant(),
    ),
    "admin never erases": c(
        "admin_ie", "erase", "eu-ie", "restricted", "service", False, ADMIN_FORBID
    ),
    "admin who is also a service never reads": c(
        "admin_svc_ie", "read", "eu-ie", "restricted", "support", False, ADMIN_FORBID
    ),
    # --- security staff with grants --------------------------------------------------
    "analyst reads restricted with a grant": c(
        "analyst_ie", "read", "eu-ie", "restricted", "safety", True, STAFF, grant_state=grant()
    ),
    "analyst reads allowable with a grant": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "allowable",
        "safety",
        True,
        STAFF,
        grant_state=ALLOWABLE_GRANT,
    ),
    "analyst without a grant": c(
        "analyst_ie", "read", "eu-ie", "restricted", "safety", False, DEFAULT
    ),
    "analyst with an expired grant": c(
        "analyst_ie", "read", "eu-ie", "restricted", "safety", False, DEFAULT, grant_state=EXPIRED
    ),
    "analyst with a revoked grant": c(
        "analyst_ie", "read", "eu-ie", "restricted", "safety", False, DEFAULT, grant_state=REVOKED
    ),
    "analyst with an unapproved grant": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        DEFAULT,
        grant_state=UNAPPROVED,
    ),
    "analyst with a grant for another purpose": c(
        "analyst_ie", "read", "eu-ie", "restricted", "legal", False, DEFAULT, grant_state=grant()
    ),
    "analyst with a grant for another subject": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        DEFAULT,
        grant_state=OTHER_SUBJECT,
    ),
    "analyst with an allowable grant reading restricted": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        DEFAULT,
        grant_state=ALLOWABLE_GRANT,
    ),
    "analyst with a restricted grant reading allowable": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "allowable",
        "safety",
        False,
        DEFAULT,
        grant_state=RESTRICTED_GRANT,
    ),
    "analyst may not export even with a grant": c(
        "analyst_ie", "export", "eu-ie", "restricted", "safety", False, DEFAULT, grant_state=grant()
    ),
    "analyst in ireland reading norway": c(
        "analyst_ie",
        "read",
        "eu-no",
        "restricted",
        "safety",
        False,
        ONLY,
        OUTSIDE,
        grant_state=grant(),
    ),
    "officer in norway reads norway with a grant": c(
        "officer_no",
        "read",
        "eu-no",
        "restricted",
        "security",
        True,
        STAFF,
        grant_state=grant(purpose="security"),
    ),
    "analyst with a grant calling from the us": c(
        "analyst_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        ONLY,
        OUTSIDE,
        source="US",
        grant_state=grant(),
    ),
    "us partner analyst reads us with a grant": c(
        "analyst_us",
        "read",
        "us",
        "restricted",
        "legal",
        True,
        STAFF,
        grant_state=grant(purpose="legal"),
    ),
    "us partner analyst reading eu with a grant": c(
        "analyst_us",
        "read",
        "eu-ie",
        "restricted",
        "legal",
        False,
        ONLY,
        OUTSIDE,
        grant_state=grant(purpose="legal"),
    ),
    "other entity's staff with a grant": c(
        "support_ie",
        "read",
        "eu-ie",
        "restricted",
        "support",
        False,
        ONLY,
        grant_state=grant(purpose="support"),
    ),
    "other entity's staff with a grant on allowable": c(
        "support_ie",
        "read",
        "eu-ie",
        "allowable",
        "support",
        False,
        DEFAULT,
        grant_state=grant(purpose="support"),
    ),
    # --- break glass -------------------------------------------------------------------
    "officer breaks the glass": c(
        "officer_ie", "read", "eu-ie", "restricted", "safety", True, GLASS, break_glass=True
    ),
    "officer breaks the glass on allowable": c(
        "officer_ie", "read", "eu-ie", "allowable", "safety", True, GLASS, break_glass=True
    ),
    "officer invokes the break_glass action": c(
        "officer_ie",
        "break_glass",
        "eu-ie",
        "restricted",
        "security",
        True,
        GLASS,
        break_glass=True,
    ),
    "officer in singapore breaks the glass there": c(
        "officer_sg", "read", "ap-sg", "restricted", "security", True, GLASS, break_glass=True
    ),
    "officer without the flag and without a grant": c(
        "officer_ie", "read", "eu-ie", "restricted", "safety", False, DEFAULT
    ),
    "analyst cannot break the glass": c(
        "analyst_ie", "read", "eu-ie", "restricted", "safety", False, DEFAULT, break_glass=True
    ),
    "officer breaking the glass in another region": c(
        "officer_ie",
        "read",
        "eu-no",
        "restricted",
        "safety",
        False,
        ONLY,
        OUTSIDE,
        break_glass=True,
    ),
    "officer breaking the glass from the us": c(
        "officer_ie",
        "read",
        "eu-ie",
        "restricted",
        "safety",
        False,
        ONLY,
        OUTSIDE,
        source="US",
        break_glass=True,
    ),
    "officer breaking the glass for no known purpose": c(
        "officer_ie", "read", "eu-ie", "restricted", "curiosity", False, PURPOSE, break_glass=True
    ),
    "officer breaking the glass cannot export": c(
        "officer_ie", "export", "eu-ie", "restricted", "safety", False, DEFAULT, break_glass=True
    ),
    # --- staff outside the region, transfer agreements ----------------------------------
    "us support reads eu allowable without agreement": c(
        "support_us", "read", "eu-ie", "allowable", "support", False, AGREEMENT
    ),
    "us support with an agreement but no transforms": c(
        "support_us", "read", "eu-ie", "allowable", "support", False, AGREEMENT, agreement="ta-1"
    ),
    "us support with transforms but no agreement": c(
        "support_us", "read", "eu-ie", "allowable", "support", False, AGREEMENT, transforms=True
    ),
    "us support reads eu allowable under an agreement": c(
        "support_us",
        "read",
        "eu-ie",
        "allowable",
        "support",
        True,
        TRANSFER,
        agreement="ta-1",
        transforms=True,
    ),
    "an agreement never moves restricted data": c(
        "support_us",
        "read",
        "eu-ie",
        "restricted",
        "support",
        False,
        ONLY,
        OUTSIDE,
        agreement="ta-1",
        transforms=True,
    ),
    "an agreement still needs a known purpose": c(
        "support_us",
        "read",
        "eu-ie",
        "allowable",
        "gossip",
        False,
        PURPOSE,
        agreement="ta-1",
        transforms=True,
    ),
    # --- public data ---------------------------------------------------------------------
    "ie support staff read no public data for any known purpose": c(
        "support_ie", "read", "eu-no", "public", "marketing", True, PUBLIC
    ),
    "us support reads no eu public data": c(
        "support_us", "read", "eu-ie", "public", "support", False, DEFAULT
    ),
    "ie support staff may not write public data": c(
        "support_ie", "write", "eu-ie", "public", "support", False, DEFAULT
    ),
    # --- unknown things fail closed ----------------------------------------------------
    "a region the configuration does not know": c(
        "analyst_ie", "read", "mars", "restricted", "safety", False, grant_state=grant()
    ),
}


def test_there_are_at_least_forty_scenarios() -> None:
    assert len(SCENARIOS) >= 40


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str, engine: PolicyEngine, ask: Ask) -> None:
    case = SCENARIOS[name]
    extra = dict(case.extra)
    grant_state = extra.pop("grant_state", None)
    if isinstance(grant_state, GrantState):
        extra["grant_state"] = grant_state
    request = ask(case.who, case.action, case.region, case.category, case.purpose, **extra)
    decision = engine.decide(request)
    assert decision.allowed is case.allow, decision.reason
    if case.policies is not None:
        assert set(decision.policy_ids) == case.policies, decision.reason
    if case.allow:
        assert decision.errors == ()
    assert decision.break_glass is (case.allow and case.policies == frozenset({GLASS}))


def test_break_glass_is_only_flagged_on_an_allow(engine: PolicyEngine, ask: Ask) -> None:
    allowed = engine.decide(
        ask("officer_ie", "read", "eu-ie", "restricted", "safety", break_glass=True)
    )
    assert allowed.allowed
    assert allowed.break_glass
    assert allowed.log_record()["result"] == {
        "allow": True,
        "break_glass": True,
        "reason": "allowed by `break-glass-officer`",
    }
    denied = engine.decide(
        ask("officer_ie", "read", "eu-ie", "restricted", "safety", source="CN", break_glass=True)
    )
    assert not denied.allowed
    assert not denied.break_glass


def test_a_region_the_configuration_forgot_fails_closed(ask: Ask) -> None:
    """Policies that read the region's security entity error for a region without one."""
    config = load_policy_config()
    entities = {k: v for k, v in config.security_entities.items() if k != "eu-no"}
    forgetful = PolicyEngine.load(config=replace(config, security_entities=entities))
    request = ask("officer_no", "read", "eu-no", "restricted", "safety", grant_state=grant())
    decision = forgetful.decide(request)
    assert not decision.allowed
    assert "fail-closed" in decision.policy_ids
    assert any('Region::"eu-no"' in error for error in decision.errors)
    # A service of the jurisdiction never needs the security entity: still allowed.
    assert forgetful.decide(ask("svc_ie", "read", "eu-no", "restricted", "support")).allowed
