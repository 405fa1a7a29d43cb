"""The policy configuration: the built-in one, and every fault reported clearly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from domicile.errors import ConfigError
from domicile.policy.config import load_policy_config, parse_policy_config

GOOD = """
version = "1"
purposes = ["service", "support"]
countries_of_concern = ["CN", "RU"]

[security_entities]
eu-ie = "Partner EU"

[approval_steps]
allowable = 1
restricted = 2
"""


def test_the_built_in_configuration() -> None:
    config = load_policy_config()
    assert config.purposes == (
        "service",
        "support",
        "safety",
        "security",
        "legal",
        "analytics",
        "marketing",
    )
    assert config.countries_of_concern == {"CN", "HK", "MO", "CU", "IR", "KP", "RU", "VE"}
    assert set(config.security_entities) == {"eu-ie", "eu-no", "us", "ap-sg"}
    assert config.approval_steps_for("restricted") == 2
    assert config.approval_steps_for("allowable") == 1
    assert config.approval_steps_for("public") == 0
    assert config.is_known_purpose("legal")
    assert not config.is_known_purpose("curiosity")
    config.verify_regions(["eu-ie", "us"])


def test_digest_is_stable_and_ignores_order() -> None:
    shuffled = GOOD.replace('["CN", "RU"]', '["RU", "CN"]')
    assert parse_policy_config(GOOD).digest() == parse_policy_config(shuffled).digest()
    assert re.fullmatch(r"[0-9a-f]{64}", parse_policy_config(GOOD).digest())


def test_verify_regions_names_the_missing_ones() -> None:
    config = parse_policy_config(GOOD)
    with pytest.raises(ConfigError, match="no security entity for `ap-sg`, `us`"):
        config.verify_regions(["eu-ie", "us", "ap-sg"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("version", "versio"), "unknown key `versio` in the top level"),
        (('version = "1"', 'version = ""'), "has no `version`"),
        (('purposes = ["service", "support"]', "purposes = []"), "`purposes` is empty"),
        (('purposes = ["service", "support"]', 'purposes = "service"'), "list of strings"),
        (('"support"]', '"Support"]'), "purpose `Support` must be a lowercase letter"),
        (('"support"]', '"service"]'), "`purposes` lists `service` twice"),
        (('["CN", "RU"]', '["cn"]'), "lists `cn`, which is not an uppercase ISO 3166-1"),
        (('["CN", "RU"]', '["XX"]'), "lists `XX`"),
        (('eu-ie = "Partner EU"', 'eu-ie = ""'), "security entity of region `eu-ie` must be"),
        (('eu-ie = "Partner EU"', 'eu-ie = " Partner"'), "surrounding whitespace"),
        (('eu-ie = "Partner EU"', 'EU_IE = "Partner EU"'), "names region `EU_IE`"),
        (('[security_entities]\neu-ie = "Partner EU"', ""), "has no `[security_entities]`"),
        (("restricted = 2", "restricted = 0"), "steps must rise with sensitivity"),
        (("restricted = 2", 'restricted = "two"'), "must be an integer"),
        (("restricted = 2", "restricted = 11"), "between 0 and 10"),
        (("restricted = 2", "secret = 3"), "unknown key `secret` in `[approval_steps]`"),
        (('version = "1"', "version = "), "not valid TOML"),
    ],
)
def test_faults_are_reported_with_the_file(change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        parse_policy_config(text, source="mine.toml")
    assert str(caught.value).startswith("policy configuration `mine.toml`: ")


def test_files(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD)
    assert load_policy_config(path).security_entities == {"eu-ie": "Partner EU"}
    with pytest.raises(ConfigError, match="cannot read policy configuration"):
        load_policy_config(tmp_path / "missing.toml")
    path.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_policy_config(path)
