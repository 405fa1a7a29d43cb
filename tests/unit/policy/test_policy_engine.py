"""The engine: loading and validation, the policy hash, fail-closed evaluation, field-level
decisions, decision log records, atomic reload and reload from another thread."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import cedarpy
import pytest
from policy_support import Ask, principal

from domicile.errors import ConfigError
from domicile.policy.engine import PolicyEngine, _cedar_request, _entities, evaluate
from domicile.policy.model import PolicyRequest
from domicile.policy.snapshot import default_policies, default_schema
from domicile.residency.topology import Topology

POLICIES = default_policies().text
PERMIT_READS = """
@id("permit-reads")
permit (principal, action == Domicile::Action::"read", resource is Domicile::Data);
"""
LOCKDOWN = """
@id("lockdown")
forbid (principal, action, resource);
"""

# --- loading ---------------------------------------------------------------------------


def test_the_defaults_load_and_validate(engine: PolicyEngine) -> None:
    snapshot = engine.snapshot
    assert len(snapshot.ids) == 16
    assert re.fullmatch(r"[0-9a-f]{64}", engine.policy_hash)
    assert snapshot.alerts == {"break-glass-officer": frozenset({"break_glass"})}
    assert not snapshot.uses_time
    result = cedarpy.validate_policies(POLICIES, default_schema().text)
    assert result.validation_passed


def test_the_version_record_is_enough_to_rebuild_the_version(engine: PolicyEngine) -> None:
    record = engine.snapshot.version_record()
    assert record["policy_hash"] == engine.policy_hash
    assert "service-in-home-jurisdiction" in record["policy_ids"]
    rebuilt = PolicyEngine.load(str(record["policies"]), schema=str(record["schema"]))
    assert rebuilt.policy_hash == record["policy_hash"]
    assert json.loads(json.dumps(record)) == record


def test_hash_covers_meaning_not_layout(engine: PolicyEngine) -> None:
    relaid = "// a comment\n" + POLICIES.replace("\n\n", "\n\n\n")
    assert PolicyEngine.load(relaid).policy_hash == engine.policy_hash
    changed = POLICIES.replace('"service", "support"', '"service"', 1)
    assert PolicyEngine.load(changed).policy_hash != engine.policy_hash


def test_hash_covers_the_configuration(engine: PolicyEngine, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    text = (Path(__file__).parents[3] / "src/domicile/policy/default_config.toml").read_text()
    config.write_text(text.replace('"VE"]', '"VE", "BY"]'))
    assert PolicyEngine.load(config=config).policy_hash != engine.policy_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("permit (principal, action, resource) when {", "does not parse"),
        ("permit (principal, action, resource);", "has no usable `@id"),
        ('@id("a b") permit (principal, action, resource);', "has no usable `@id"),
        (PERMIT_READS + PERMIT_READS, "policy id `permit-reads` is used twice"),
        ('@id("default-deny") permit (principal, action, resource);', "is reserved"),
        ('@id("t") permit (principal == ?principal, action, resource);', "templates"),
        (
            '@id("typo") permit (principal, action, resource is Domicile::Data) '
            "when { principal.clearence > 2 };",
            "`typo`: ",
        ),
        (
            '@id("bad-action") permit (principal, action == Domicile::Action::"fly", resource);',
            "does not validate against the schema",
        ),
    ],
)
def test_bad_policies_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        PolicyEngine.load(text)
    assert str(caught.value).startswith("policy file `<policies>`: ")
    assert "\n" not in str(caught.value)


def test_bad_schema_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^schema `<schema>`: "):
        PolicyEngine.load(schema="namespace Domicile { entity }")
    with pytest.raises(ConfigError, match=r"cannot read policy file `.*missing\.cedar`"):
        PolicyEngine.load(tmp_path / "missing.cedar")
    binary = tmp_path / "binary.cedar"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        PolicyEngine.load(binary)


def test_a_schema_whose_context_lacks_an_attribute_is_refused(engine: PolicyEngine) -> None:
    """A schema written before `destination_country` would fail every request closed:
    it is refused at load, and a reload to it keeps the version in force."""
    line = next(x for x in default_schema().text.splitlines() if "destination_country" in x)
    old_schema = default_schema().text.replace(line + "\n", "")
    policies = '@id("p") permit (principal, action, resource) when { context.purpose == "x" };'
    with pytest.raises(ConfigError, match=r"does not fit the requests.*destination_country"):
        PolicyEngine.load(policies, schema=old_schema)
    before = engine.policy_hash
    with pytest.raises(ConfigError, match=r"does not fit the requests"):
        engine.reload(policies, schema=old_schema)
    assert engine.policy_hash == before


def test_policies_are_read_from_files(tmp_path: Path, engine: PolicyEngine) -> None:
    policies = tmp_path / "p.cedar"
    policies.write_text(POLICIES)
    schema = tmp_path / "s.cedarschema"
    schema.write_text(default_schema().text)
    loaded = PolicyEngine.load(policies, schema=schema)
    assert loaded.policy_hash == engine.policy_hash
    assert loaded.snapshot.policies.origin == str(policies)


def test_a_policy_reading_time_makes_the_snapshot_time_sensitive() -> None:
    timed = '@id("office-hours") permit (principal, action, resource) when { context.time > 0 };'
    assert PolicyEngine.load(timed).snapshot.uses_time
    other = '@id("p") permit (principal, action, resource) when { context.purpose == "x" };'
    assert not PolicyEngine.load(other).snapshot.uses_time


# --- fail closed -----------------------------------------------------------------------

# The forbid reads the security entity of the data's region. For a region the
# configuration does not name, that attribute access errors, so Cedar skips the forbid —
# and the permit alone would allow.
HOLE = (
    PERMIT_READS
    + """
@id("forbid-unless-security-entity")
forbid (principal, action, resource is Domicile::Data)
unless { principal.entity == resource.home_region.security_entity };
"""
)


def test_an_erroring_forbid_cannot_open_a_hole(ask: Ask) -> None:
    engine = PolicyEngine.load(HOLE)
    snapshot = engine.snapshot
    request = ask("svc_ie", "read", "xx-nowhere", "restricted", "support")

    # Cedar on its own: the forbid errors, is skipped, and the permit allows.
    raw = cedarpy.is_authorized(
        _cedar_request(request),
        snapshot.policy_set,
        _entities(snapshot, [request]),
        snapshot.schema_handle,
    )
    assert raw.decision == cedarpy.Decision.Allow
    assert raw.diagnostics.errors

    # The engine: any error is a deny, naming the policy that failed.
    decision = engine.decide(request)
    assert not decision.allowed
    assert decision.verdict.cedar_decision == "Allow"
    assert decision.policy_ids == ("forbid-unless-security-entity", "fail-closed")
    assert "forbid-unless-security-entity" in decision.errors[0]
    assert "fail closed" in decision.reason

    # Where the forbid evaluates, it decides as written.
    in_config = engine.decide(ask("svc_ie", "read", "eu-ie", "restricted", "support"))
    assert not in_config.allowed
    assert in_config.errors == ()
    assert in_config.policy_ids == ("forbid-unless-security-entity",)
    officer = engine.decide(ask("officer_ie", "read", "eu-ie", "restricted", "safety"))
    assert officer.allowed
    assert officer.policy_ids == ("permit-reads",)


def test_an_erroring_forbid_denies_every_field_it_covers(topology: Topology, ask: Ask) -> None:
    engine = PolicyEngine.load(HOLE)
    request = ask("svc_ie", "read", "xx-nowhere", "restricted", "support")
    fields = PolicyRequest(
        request.principal,
        "read",
        "xx-nowhere",
        "",
        {"email": "restricted", "bio": "allowable", "username": "public"},
        request.context,
    )
    decision = engine.decide_fields(fields)
    assert decision.allowed_fields == frozenset()
    assert not decision.allowed
    assert all("fail closed" in reason for reason in decision.withheld.values())


def test_an_unknown_action_is_denied_not_raised(ask: Ask, engine: PolicyEngine) -> None:
    decision = engine.decide(ask("svc_ie", "fly", "eu-ie", "restricted", "service"))
    assert not decision.allowed
    assert decision.verdict.cedar_decision == "NoDecision"
    assert decision.policy_ids == ("fail-closed",)
    assert decision.errors


def test_one_id_for_two_principals_fails_closed(topology: Topology, ask: Ask) -> None:
    engine = PolicyEngine.load()
    first = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    impostor = replace(first, principal=replace(principal(topology, "svc_us"), id="svc_ie"))
    verdicts = evaluate(engine.snapshot, [first, impostor])
    assert [v.allowed for v in verdicts] == [False, False]
    assert all("two different entities" in v.errors[0] for v in verdicts)
    # decide_many never mixes them: each principal gets its own evaluation.
    assert [d.allowed for d in engine.decide_many([first, impostor])] == [True, False]


# --- field level and log records -----------------------------------------------------


FIELDS = {
    "email": "restricted",
    "phone": "restricted",
    "bio": "allowable",
    "display_name": "allowable",
    "username": "public",
}


def _fields(ask: Ask, action: str = "read", **kw: object) -> PolicyRequest:
    who = str(kw.pop("who", "support_us"))
    request = ask(who, action, "eu-ie", "", str(kw.pop("purpose", "support")), **kw)
    return PolicyRequest(
        request.principal, action, "eu-ie", "eea", FIELDS, request.context, subject_id="s" * 32
    )


def test_a_read_returns_exactly_the_allowed_fields(engine: PolicyEngine, ask: Ask) -> None:
    decision = engine.decide_fields(_fields(ask, agreement="ta-1", transforms=True))
    assert decision.allowed
    assert decision.allowed_fields == {"bio", "display_name"}
    assert set(decision.withheld) == {"email", "phone", "username"}
    assert "`restricted-only-service-or-security-staff`" in decision.withheld["email"]
    assert "default deny" in decision.withheld["username"]
    assert set(decision.verdicts) == {"restricted", "allowable", "public"}


def test_nothing_is_smuggled_through_an_all_or_nothing_action(
    engine: PolicyEngine, ask: Ask
) -> None:
    # The service may export everything of its jurisdiction...
    full = engine.decide_fields(_fields(ask, "export", who="svc_ie", purpose="service"))
    assert full.allowed
    assert full.allowed_fields == set(FIELDS)
    # ...but a principal allowed some categories only gets none of them by exporting.
    partial = engine.decide_fields(_fields(ask, "export", agreement="ta-1", transforms=True))
    assert not partial.allowed
    assert partial.allowed_fields == frozenset()
    assert set(partial.withheld) == set(FIELDS)


def test_a_request_for_no_field_is_denied(engine: PolicyEngine, ask: Ask) -> None:
    request = _fields(ask, who="svc_ie", purpose="service")
    empty = PolicyRequest(request.principal, "read", "eu-ie", "eea", {}, request.context)
    decision = engine.decide_fields(empty)
    assert not decision.allowed
    assert decision.reason == "no field was requested"


def test_log_record_is_opa_shaped_and_holds_no_personal_data(
    engine: PolicyEngine, ask: Ask
) -> None:
    request = _fields(ask, who="officer_ie", purpose="safety", break_glass=True)
    decision = engine.decide_fields(request)
    record = decision.log_record()
    assert set(record) == {
        "decision_id",
        "policy_hash",
        "determining_policies",
        "errors",
        "input",
        "result",
        "erased",
    }
    assert record["policy_hash"] == engine.policy_hash
    assert record["erased"] == ["/input/subject_id"]
    assert "s" * 32 not in json.dumps(record)
    assert record["input"]["principal"] == {
        "id": "officer_ie",
        "entity": "Trusted Security Partner EU",
        "country": "IE",
        "jurisdiction": "eea",
        "region": "eu-ie",
        "roles": ["officer"],
    }
    assert record["input"]["resource"]["fields"] == FIELDS | {}
    assert record["result"]["break_glass"] is True
    assert decision.break_glass
    assert "break-glass-officer" in record["determining_policies"]


def test_decision_ids_are_fresh(engine: PolicyEngine, ask: Ask) -> None:
    request = ask("svc_ie", "read", "eu-ie", "public", "service")
    assert len({engine.decide(request).decision_id for _ in range(20)}) == 20


# --- reload ------------------------------------------------------------------------------


def test_reload_swaps_and_a_bad_file_keeps_the_old_version(tmp_path: Path, ask: Ask) -> None:
    engine = PolicyEngine.load()
    before = engine.snapshot
    request = ask("svc_ie", "read", "eu-ie", "restricted", "service")
    assert engine.decide(request).allowed

    bad = tmp_path / "bad.cedar"
    bad.write_text(POLICIES + '\n@id("broken") permit (principal, action, resource) when {')
    with pytest.raises(ConfigError, match=rf"policy file `{re.escape(str(bad))}`: does not parse"):
        engine.reload(bad)
    assert engine.snapshot is before
    assert engine.decide(request).allowed

    invalid = POLICIES + '\n@id("typo") forbid (principal, action, resource) when { context.nope };'
    with pytest.raises(ConfigError, match="`typo`"):
        engine.reload(invalid)
    assert engine.snapshot is before

    good = tmp_path / "good.cedar"
    good.write_text(POLICIES + LOCKDOWN)
    new_hash = engine.reload(good)
    assert new_hash == engine.policy_hash != before.policy_hash
    assert engine.snapshot.generation == before.generation + 1
    denied = engine.decide(request)
    assert not denied.allowed
    assert denied.policy_ids == ("lockdown",)
    assert denied.policy_hash == new_hash


def test_reload_keeps_what_is_not_given(engine: PolicyEngine) -> None:
    local = PolicyEngine.load()
    local.reload(POLICIES + LOCKDOWN)
    local.reload(schema=default_schema().text)
    assert "lockdown" in local.snapshot.ids.values()
    assert local.snapshot.schema.text == default_schema().text


def test_reload_mid_evaluation_never_mixes_versions(ask: Ask) -> None:
    """A reader thread decides while a writer flips versions: every decision is whole."""
    engine = PolicyEngine.load()
    open_hash = engine.policy_hash
    locked_hash = PolicyEngine.load(POLICIES + LOCKDOWN).policy_hash
    base = ask("svc_ie", "read", "eu-ie", "", "service")
    request = PolicyRequest(base.principal, "read", "eu-ie", "eea", FIELDS, base.context)
    stop = threading.Event()
    seen: dict[str, int] = {open_hash: 0, locked_hash: 0}
    problems: list[str] = []

    def flip() -> None:
        texts = [POLICIES + LOCKDOWN, POLICIES]
        index = 0
        while not stop.is_set():
            engine.reload(texts[index % 2])
            index += 1

    writer = threading.Thread(target=flip)
    writer.start()
    try:
        # At least 400 decisions, and on until both versions were seen (bounded).
        for count in range(20_000):
            if count >= 400 and all(seen.values()):
                break
            decision = engine.decide_fields(request)
            seen[decision.policy_hash] += 1
            expect_open = decision.policy_hash == open_hash
            for category, verdict in decision.verdicts.items():
                if verdict.allowed != expect_open or (
                    not expect_open and verdict.policy_ids != ("lockdown",)
                ):
                    problems.append(f"{category}: {verdict.reason} under {decision.policy_hash}")
            if decision.allowed_fields not in (frozenset(), frozenset(FIELDS)):
                problems.append(f"mixed fields {sorted(decision.allowed_fields)}")
    finally:
        stop.set()
        writer.join()
    assert problems == []
    assert all(seen.values()), seen


# --- purity -------------------------------------------------------------------------------


def test_the_pure_policy_modules_import_no_gateway_or_storage() -> None:
    """The monitor imports these to replay decisions: they must not pull in I/O layers."""
    code = (
        "import sys\n"
        "import domicile.policy, domicile.policy.engine, domicile.policy.cache\n"
        "import domicile.policy.testcases, domicile.policy.config, domicile.policy.snapshot\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['domicile', 'gateway'],"
        " ['domicile', 'vault'], ['domicile', 'storage'], ['domicile', 'api'],"
        " ['domicile', 'principals'], ['domicile', 'runtime'])"
        " or m in ('fastapi', 'psycopg', 'sqlite3')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
