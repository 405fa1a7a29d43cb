"""Helpers of the policy tests: principals, grants and contexts on the built-in topology."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from domicile.policy.model import (
    NO_GRANT,
    CedarRequest,
    DataResource,
    GrantState,
    PolicyContext,
    PolicyPrincipal,
    SettingResource,
)
from domicile.policy.places import locate
from domicile.policy.snapshot import default_policies
from domicile.residency.topology import Topology

EU_PARTNER = "Trusted Security Partner EU"
US_PARTNER = "Trusted Security Partner US"
APAC_PARTNER = "Trusted Security Partner APAC"

# name → (employing entity, country of work, roles)
PRINCIPALS: dict[str, tuple[str, str, frozenset[str]]] = {
    "svc_ie": ("Domicile EU Ltd", "IE", frozenset({"service"})),
    "svc_de": ("Domicile EU Ltd", "DE", frozenset({"service"})),
    "svc_us": ("Domicile US Inc", "US", frozenset({"service"})),
    "svc_sg": ("Domicile APAC Pte", "SG", frozenset({"service"})),
    "svc_cn": ("Domicile APAC Pte", "CN", frozenset({"service"})),
    "admin_ie": ("Domicile EU Ltd", "IE", frozenset({"admin"})),
    "admin_svc_ie": ("Domicile EU Ltd", "IE", frozenset({"admin", "service"})),
    "officer_ie": (EU_PARTNER, "IE", frozenset({"officer"})),
    "officer_no": (EU_PARTNER, "NO", frozenset({"officer"})),
    "officer_sg": (APAC_PARTNER, "SG", frozenset({"officer"})),
    "analyst_ie": (EU_PARTNER, "IE", frozenset({"analyst"})),
    "analyst_us": (US_PARTNER, "US", frozenset({"analyst"})),
    "support_ie": ("Domicile EU Ltd", "IE", frozenset({"support"})),
    "support_us": ("Domicile US Inc", "US", frozenset({"support"})),
    "engineer_mo": (APAC_PARTNER, "MO", frozenset({"engineer"})),
    "nowhere": ("Domicile EU Ltd", "ZZ", frozenset({"service"})),
}


Ask = Callable[..., CedarRequest]


def grant(
    purpose: str = "safety",
    categories: tuple[str, ...] = ("restricted", "allowable"),
    **flags: bool,
) -> GrantState:
    """An approved, unexpired, unrevoked grant covering the subject, unless `flags` say not."""
    values = {"approved": True, "expired": False, "revoked": False, "covers_subject": True}
    values.update(flags)
    return GrantState(id="g-test", purpose=purpose, categories=frozenset(categories), **values)


def principal(topology: Topology, name: str, generation: int = 0) -> PolicyPrincipal:
    """The principal `name` of PRINCIPALS, placed by the topology."""
    entity, country, roles = PRINCIPALS[name]
    code, jurisdiction, region = locate(topology, country)
    return PolicyPrincipal(name, entity, code, jurisdiction, region, roles, generation)


def context(
    topology: Topology,
    purpose: str,
    source_country: str,
    *,
    grant_state: GrantState = NO_GRANT,
    break_glass: bool = False,
    agreement: str = "",
    transforms: bool = False,
    destination: str = "",
    time: int = 0,
) -> PolicyContext:
    """A request context coming from `source_country`."""
    source, jurisdiction, region = locate(topology, source_country)
    return PolicyContext(
        purpose=purpose,
        source_country=source,
        source_jurisdiction=jurisdiction,
        source_region=region,
        grant=grant_state,
        break_glass=break_glass,
        transfer_agreement=agreement,
        transforms_applied=transforms,
        destination_country=destination,
        time=time,
    )


def make_ask(topology: Topology) -> Ask:
    """Return ask(who, action, region-or-setting, category, purpose, **ctx) -> CedarRequest."""

    def build(
        who: str,
        action: str,
        region: str,
        category: str = "",
        purpose: str = "service",
        *,
        source: str | None = None,
        grant_state: GrantState = NO_GRANT,
        break_glass: bool = False,
        agreement: str = "",
        transforms: bool = False,
        time: int = 0,
        generation: int = 0,
    ) -> CedarRequest:
        who_principal = principal(topology, who, generation)
        resource: DataResource | SettingResource
        if action == "administer":
            resource = SettingResource(region)
        else:
            known = topology.regions.get(region)
            jurisdiction = known.jurisdiction if known is not None else ""
            resource = DataResource(region, jurisdiction, category)
        ctx = context(
            topology,
            purpose,
            source or PRINCIPALS[who][1],
            grant_state=grant_state,
            break_glass=break_glass,
            agreement=agreement,
            transforms=transforms,
            time=time,
        )
        return CedarRequest(who_principal, action, resource, ctx)

    return build


def padded_policies(count: int, seed: int = 7) -> str:
    """The default set and `count` more forbid rules that match nobody (each with a
    random role name, so the text does not compress to nothing)."""
    rng = random.Random(seed)
    extra = []
    for n in range(count):
        role = "".join(rng.choice(string.ascii_lowercase) for _ in range(16))
        extra.append(
            f'@id("padding-{n}")\n'
            'forbid (principal, action == Domicile::Action::"read", resource is Domicile::Data)\n'
            f'when {{ principal.roles.contains("{role}") }};\n'
        )
    return default_policies().text + "\n" + "\n".join(extra)
