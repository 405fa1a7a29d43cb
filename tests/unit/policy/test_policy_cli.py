"""`domicile policy validate|test` through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from domicile.policy.cli import policy
from domicile.policy.engine import PolicyEngine
from domicile.policy.snapshot import default_policies

CASES = """
[principals.svc-eu]
entity = "Domicile EU Ltd"
country = "IE"
roles = ["service"]

[[case]]
name = "service reads"
principal = "svc-eu"
action = "read"
region = "eu-ie"
category = "restricted"
purpose = "support"
expect = "allow"
policies = ["service-in-home-jurisdiction"]

[[case]]
name = "service reads for marketing"
principal = "svc-eu"
action = "read"
region = "eu-ie"
category = "restricted"
purpose = "marketing"
expect = "allow"
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(policy, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_validate_prints_the_hash() -> None:
    code, out, err = run("validate")
    assert code == 0, err
    assert "ok: 16 policies validate against the schema" in out
    assert f"policy hash: {PolicyEngine.load().policy_hash}" in out


def test_validate_files(tmp_path: Path) -> None:
    good = tmp_path / "good.cedar"
    good.write_text(default_policies().text)
    assert run("validate", "--policies", str(good))[0] == 0
    bad = tmp_path / "bad.cedar"
    bad.write_text('@id("x") permit (principal, action, resource) when { principal.nope };')
    code, out, err = run("validate", "--policies", str(bad))
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert re.fullmatch(r"error: policy file `.*bad\.cedar`: does not validate .*`x`: .*\n", err)


def test_validate_reports_missing_files_and_bad_schema(tmp_path: Path) -> None:
    code, _, err = run("validate", "--policies", str(tmp_path / "none.cedar"))
    assert code == 1
    assert err.startswith("error: cannot read policy file")
    schema = tmp_path / "s.cedarschema"
    schema.write_text("entity {")
    code, _, err = run("validate", "--schema", str(schema))
    assert code == 1
    assert err.startswith("error: schema `")
    config = tmp_path / "c.toml"
    config.write_text('version = "1"\npurposes = []\n')
    code, _, err = run("validate", "--config", str(config))
    assert code == 1
    assert "`purposes` is empty" in err


def test_the_built_in_tests_pass() -> None:
    code, out, err = run("test")
    assert code == 0, out + err
    lines = out.splitlines()
    assert len(lines) > 30
    assert all(line.startswith("pass  ") for line in lines[:-1])
    assert re.fullmatch(r"\d+ passed, 0 failed", lines[-1])


def test_a_failing_case_fails_the_run(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(CASES)
    code, out, _ = run("test", str(cases))
    assert code == 1
    assert "pass  service reads: allowed by `service-in-home-jurisdiction`" in out
    assert "FAIL  service reads for marketing: expected allow, got deny" in out
    assert out.rstrip().endswith("1 passed, 1 failed")


def test_json_cases_and_expected_policies(tmp_path: Path) -> None:
    document = {
        "principals": {"admin": {"entity": "Op", "country": "IE", "roles": ["admin"]}},
        "case": [
            {
                "name": "admin reads",
                "principal": "admin",
                "action": "read",
                "region": "eu-ie",
                "category": "public",
                "purpose": "support",
                "expect": "deny",
                "policies": ["default-deny"],
            },
            {
                "name": "admin administers",
                "principal": "admin",
                "action": "administer",
                "setting": "catalog",
                "expect": "allow",
            },
        ],
    }
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps(document))
    code, out, _ = run("test", str(cases))
    assert code == 1
    assert (
        "FAIL  admin reads: expected policies default-deny, "
        "got admin-never-touches-personal-data" in out
    )
    assert "pass  admin administers" in out


def test_test_runs_against_the_given_policies(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(
        CASES.replace(
            'purpose = "marketing"\nexpect = "allow"', 'purpose = "marketing"\nexpect = "deny"'
        )
    )
    assert run("test", str(cases))[0] == 0
    stricter = tmp_path / "strict.cedar"
    stricter.write_text(
        default_policies().text + '\n@id("no") forbid (principal, action, resource);'
    )
    code, out, _ = run("test", str(cases), "--policies", str(stricter))
    assert code == 1
    assert "FAIL  service reads: expected allow, got deny" in out


def test_bad_test_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    for text, message in [
        ("[[case]\n", "not valid TOML"),
        ("x = 1\n", "unknown key `x` in the top level"),
        ("[principals]\n", "has no `[[case]]`"),
        (
            CASES.replace('principal = "svc-eu"', 'principal = "ghost"', 1),
            "unknown principal `ghost`",
        ),
        (
            CASES.replace('expect = "allow"', 'expect = "maybe"', 1),
            "`expect` in case `service reads` must be",
        ),
        (
            CASES.replace('action = "read"', "action = 3", 1),
            "`action` in case `service reads` must be a str",
        ),
    ]:
        cases.write_text(text)
        code, _, err = run("test", str(cases))
        assert code == 1, text
        assert err.startswith("error: policy tests `"), err
        assert message in err, err
        assert err.count("\n") == 1
    code, _, err = run("test", str(tmp_path / "none.toml"))
    assert code == 1
    assert err.startswith("error: cannot read policy tests")
