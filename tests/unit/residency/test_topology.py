"""The topology: default routing, normalisation and every validation error."""

from __future__ import annotations

import re
from pathlib import Path

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.errors import TopologyError, UnknownCountry, UnknownRegion
from domicile.residency.topology import (
    Topology,
    is_country_code,
    iso_country_codes,
    load_topology,
    normalise_country,
    parse_topology,
)

ALL_CODES = sorted(str(country.alpha_2) for country in pycountry.countries)
EU27 = [
    "AT",
    "BE",
    "BG",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GR",
    "HR",
    "HU",
    "IE",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
]


@pytest.fixture(scope="module")
def default() -> Topology:
    """The built-in topology."""
    return load_topology()


# --- the built-in default ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "region"),
    [
        ("IE", "eu-ie"),
        ("DE", "eu-ie"),
        ("FR", "eu-ie"),
        ("NO", "eu-no"),
        ("SE", "eu-no"),
        ("DK", "eu-no"),
        ("FI", "eu-no"),
        ("IS", "eu-no"),
        ("GB", "eu-ie"),
        ("CH", "eu-ie"),
        ("LI", "eu-ie"),
        ("US", "us"),
        ("SG", "ap-sg"),
        ("JP", "ap-sg"),
        ("BR", "ap-sg"),
        ("CN", "ap-sg"),
    ],
)
def test_default_routing(default: Topology, country: str, region: str) -> None:
    assert default.home_region(country) == region


def test_default_jurisdictions(default: Topology) -> None:
    assert set(default.jurisdictions) == {"eea", "us", "row"}
    eea = default.jurisdictions["eea"]
    assert set(EU27) | {"IS", "LI", "NO", "GB", "CH"} <= eea.countries
    assert eea.regions == ("eu-ie", "eu-no")
    assert eea.default_region == "eu-ie"
    assert default.jurisdictions["us"].countries == {"US"}
    assert default.jurisdictions["row"].catch_all
    assert default.jurisdictions["row"].regions == ("ap-sg",)
    assert len(EU27) == 27


def test_default_regions(default: Topology) -> None:
    assert set(default.regions) == {"eu-ie", "eu-no", "us", "ap-sg"}
    locations = {name: region.location for name, region in default.regions.items()}
    assert locations == {"eu-ie": "IE", "eu-no": "NO", "us": "US", "ap-sg": "SG"}
    for region in default.regions.values():
        assert "{data_dir}" in region.storage
        assert "{data_dir}" in region.custodian
        assert region.description


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_iso_code_has_exactly_one_home(default: Topology, code: str) -> None:
    region = default.home_region(code)
    jurisdiction = default.jurisdiction_of(code)
    assert region in jurisdiction.regions
    assert default.region(region).jurisdiction == jurisdiction.name
    owners = [j.name for j in default.jurisdictions.values() if code in j.countries]
    assert owners == [jurisdiction.name]


def test_routes_cover_every_iso_code(default: Topology) -> None:
    assert set(default.routes) == set(ALL_CODES) == iso_country_codes()
    assert len(ALL_CODES) == 249


def test_territories_follow_the_documented_rule(default: Topology) -> None:
    assert default.home_region("AX") == "eu-no"  # Åland goes with Finland
    assert default.home_region("RE") == "eu-ie"  # Réunion is EU territory
    assert default.home_region("FO") == "ap-sg"  # Faroe Islands are outside the EEA
    assert default.home_region("GL") == "ap-sg"


def test_region_lookup(default: Topology) -> None:
    assert default.region("eu-no").location == "NO"
    with pytest.raises(UnknownRegion, match=r"^unknown region `eu-fr`$"):
        default.region("eu-fr")


def test_storage_and_custodian_urls(default: Topology) -> None:
    region = default.region("eu-ie")
    assert region.storage_url("/srv/d") == "sqlite:////srv/d/regions/eu-ie/vault.db"
    assert region.custodian_url(Path("data")) == "local:data/regions/eu-ie/keys"


def test_digest_is_stable_and_sensitive(default: Topology) -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", default.digest())
    assert load_topology().digest() == default.digest()
    assert load_topology() == default
    text = MINIMAL.replace('version = "t1"', 'version = "t2"')
    assert parse_topology(text).digest() != parse_topology(MINIMAL).digest()


def test_digest_ignores_list_and_table_order() -> None:
    reordered = MINIMAL.replace('countries = ["IE", "NO"]', 'countries = ["NO", "IE"]')
    assert parse_topology(reordered).digest() == parse_topology(MINIMAL).digest()
    start, end = MINIMAL.index("[regions.ie]"), MINIMAL.index("[regions.no]")
    moved = MINIMAL[:start] + MINIMAL[end:] + "\n" + MINIMAL[start:end]
    assert parse_topology(moved).digest() == parse_topology(MINIMAL).digest()


# --- normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_country", "code"),
    [("ie", "IE"), (" IE ", "IE"), ("\tNo\n", "NO"), ("gB", "GB"), ("us", "US")],
)
def test_normalise_country(default: Topology, given_country: str, code: str) -> None:
    assert default.normalise_country(given_country) == code
    assert normalise_country(given_country) == code


@pytest.mark.parametrize("bad", ["", "  ", "XX", "UK", "IRL", "I E", "XK", "ß", "ＩＥ", "1E"])
def test_normalise_country_refuses(default: Topology, bad: str) -> None:
    with pytest.raises(UnknownCountry, match=r"is not an ISO 3166-1 alpha-2 country code$"):
        default.normalise_country(bad)
    with pytest.raises(UnknownCountry):
        default.home_region(bad)
    with pytest.raises(UnknownCountry):
        default.jurisdiction_of(bad)


@pytest.mark.parametrize("bad", [None, 353, b"IE", ["IE"]])
def test_normalise_country_refuses_non_strings(bad: object) -> None:
    with pytest.raises(UnknownCountry):
        normalise_country(bad)


def test_unknown_country_message_is_short_and_quoted() -> None:
    with pytest.raises(UnknownCountry) as info:
        normalise_country("x" * 500 + "`")
    message = str(info.value)
    assert message.startswith("`xxxxxxxx")
    assert len(message) < 100
    assert message.count("`") == 2


def test_is_country_code_is_exact() -> None:
    assert is_country_code("IE")
    assert not is_country_code("ie")
    assert not is_country_code(" IE")
    assert not is_country_code(None)


@given(st.sampled_from(ALL_CODES), st.booleans(), st.sampled_from(["", " ", "\t", "\n "]))
def test_normalise_any_case_and_whitespace(code: str, lower: bool, pad: str) -> None:
    given_country = pad + (code.lower() if lower else code) + pad
    assert normalise_country(given_country) == code


@given(st.text(max_size=8))
def test_normalise_returns_a_code_or_raises_unknown_country(text: str) -> None:
    try:
        code = normalise_country(text)
    except UnknownCountry:
        return
    assert code in iso_country_codes()


def test_country_in_no_jurisdiction() -> None:
    text = MINIMAL.replace('countries = "*"', 'countries = ["SG"]')
    topology = parse_topology(text)
    assert topology.home_region("SG") == "sg"
    with pytest.raises(UnknownCountry, match=r"^country `JP` is in no jurisdiction"):
        topology.home_region("jp")
    with pytest.raises(UnknownCountry, match=r"^country `JP` is in no jurisdiction"):
        topology.jurisdiction_of("JP")


# --- loading and validation -------------------------------------------------------------

MINIMAL = """
version = "t1"

[jurisdictions.eu]
countries = ["IE", "NO"]
default_region = "ie"

[jurisdictions.rest]
countries = "*"

[regions.ie]
jurisdiction = "eu"
location = "IE"
storage = "sqlite:///{data_dir}/ie.db"
custodian = "local:{data_dir}/ie"

[regions.no]
jurisdiction = "eu"
location = "NO"
storage = "sqlite:///{data_dir}/no.db"
custodian = "local:{data_dir}/no"
countries = ["NO"]

[regions.sg]
jurisdiction = "rest"
location = "SG"
storage = "sqlite:///{data_dir}/sg.db"
custodian = "local:{data_dir}/sg"
"""


def test_minimal_topology() -> None:
    topology = parse_topology(MINIMAL)
    assert topology.version == "t1"
    assert topology.home_region("IE") == "ie"
    assert topology.home_region("NO") == "no"
    assert topology.home_region("JP") == "sg"
    assert topology.region("no").countries == {"NO"}


def test_lowercase_codes_in_the_file_are_normalised() -> None:
    topology = parse_topology(MINIMAL.replace('["IE", "NO"]', '["ie", " no"]'))
    assert topology.jurisdictions["eu"].countries == {"IE", "NO"}


def test_single_region_needs_no_default() -> None:
    start = MINIMAL.index("[regions.no]")
    text = MINIMAL[:start] + MINIMAL[MINIMAL.index("[regions.sg]") :]
    topology = parse_topology(text.replace('default_region = "ie"\n', ""))
    assert topology.jurisdictions["eu"].regions == ("ie",)
    assert topology.home_region("NO") == "ie"


def test_default_region_comes_first() -> None:
    text = MINIMAL.replace('default_region = "ie"', 'default_region = "no"')
    topology = parse_topology(text.replace('countries = ["NO"]\n', ""))
    assert topology.jurisdictions["eu"].regions == ("no", "ie")
    assert topology.home_region("IE") == "no"
    assert topology.home_region("NO") == "no"


def _extra_region(name: str, jurisdiction: str, extra: str = "") -> str:
    return (
        f'\n[regions.{name}]\njurisdiction = "{jurisdiction}"\nlocation = "IE"\n'
        f'storage = "s:{{data_dir}}/{name}"\ncustodian = "c:{{data_dir}}/{name}"\n{extra}'
    )


INVALID = [
    pytest.param(
        "version = 1 2", r"^topology `t.toml`: not valid TOML: .*line 1", id="toml-syntax"
    ),
    pytest.param(
        MINIMAL.replace('["IE", "NO"]', '["IE", "NO", "XX"]'),
        r"jurisdiction `eu` lists `XX`, which is not an ISO 3166-1 alpha-2 code",
        id="unknown-iso-code",
    ),
    pytest.param(
        MINIMAL.replace('location = "SG"', 'location = "Singapore"'),
        r"region `sg` has location `Singapore`, which is not an ISO 3166-1 alpha-2 code$",
        id="bad-location",
    ),
    pytest.param(
        MINIMAL
        + '\n[jurisdictions.emea]\ncountries = ["FR", "IE"]\n'
        + _extra_region("fr", "emea"),
        r"country `IE` is in two jurisdictions: `eu` and `emea`",
        id="country-in-two-jurisdictions",
    ),
    pytest.param(
        MINIMAL.replace('storage = "sqlite:///{data_dir}/sg.db"\n', ""),
        r"region `sg` has no `storage`$",
        id="region-without-storage",
    ),
    pytest.param(
        MINIMAL.replace('custodian = "local:{data_dir}/sg"', 'custodian = "  "'),
        r"region `sg` has no `custodian` \(it is empty\)$",
        id="region-with-empty-custodian",
    ),
    pytest.param(
        MINIMAL.replace('custodian = "local:{data_dir}/sg"', "custodian = 3"),
        r"`custodian` in region `sg` must be a string$",
        id="custodian-not-a-string",
    ),
    pytest.param(
        MINIMAL + _extra_region("fr", "emea"),
        r"region `fr` names unknown jurisdiction `emea`$",
        id="unknown-jurisdiction",
    ),
    pytest.param(
        MINIMAL + '\n[jurisdictions.us]\ncountries = ["US"]\n',
        r"jurisdiction `us` has no region",
        id="jurisdiction-without-regions",
    ),
    pytest.param(
        MINIMAL + '\n[jurisdictions.other]\ncountries = "*"\n' + _extra_region("x", "other"),
        r'jurisdictions `rest` and `other` are both catch-alls \(`countries = "\*"`\)',
        id="two-catch-alls",
    ),
    pytest.param(
        MINIMAL.replace('countries = "*"', 'countries = "all"'),
        r'`countries` in jurisdiction `rest` must be a list of ISO codes or "\*"$',
        id="catch-all-misspelt",
    ),
    pytest.param(
        MINIMAL.replace('countries = ["NO"]', 'countries = ["NO", "JP"]'),
        r"region `no` lists `JP`, which belongs to jurisdiction `rest`, not `eu`$",
        id="override-into-other-jurisdiction",
    ),
    pytest.param(
        MINIMAL.replace('countries = "*"', 'countries = ["SG"]').replace(
            'countries = ["NO"]', 'countries = ["NO", "JP"]'
        ),
        r"region `no` lists `JP`, which is in no jurisdiction$",
        id="override-of-unclaimed-country",
    ),
    pytest.param(
        MINIMAL + _extra_region("no2", "eu", 'countries = ["NO"]\n'),
        r"country `NO` is listed by two regions: `no` and `no2`$",
        id="override-in-two-regions",
    ),
    pytest.param(
        MINIMAL.replace('["IE", "NO"]', '["IE", "NO", "ie"]'),
        r"jurisdiction `eu` lists `IE` twice$",
        id="country-listed-twice",
    ),
    pytest.param(
        MINIMAL.replace("[regions.sg]", "[regions.sg]\nzone = 1"),
        r"unknown key `zone` in region `sg` \(known: countries, custodian, ",
        id="unknown-region-key",
    ),
    pytest.param(
        MINIMAL.replace("[jurisdictions.eu]", "[jurisdictions.eu]\nregion = 'ie'"),
        r"unknown key `region` in jurisdiction `eu`",
        id="unknown-jurisdiction-key",
    ),
    pytest.param(
        "owner = 'me'\n" + MINIMAL,
        r"unknown key `owner` in the top level",
        id="unknown-top-level-key",
    ),
    pytest.param(
        MINIMAL.replace("[regions.sg]", '[regions."EU_SG"]').replace(
            'jurisdiction = "rest"', 'jurisdiction = "rest"'
        ),
        r"region name `EU_SG` must be 1–63 lowercase letters, digits and hyphens",
        id="bad-region-name",
    ),
    pytest.param(
        MINIMAL.replace("[regions.sg]", "[regions.-sg]"),
        r"region name `-sg` must be",
        id="region-name-leading-hyphen",
    ),
    pytest.param(
        MINIMAL.replace("[jurisdictions.rest]", '[jurisdictions."Rest of World"]'),
        r"jurisdiction name `Rest of World` must be",
        id="bad-jurisdiction-name",
    ),
    pytest.param(
        MINIMAL.replace('default_region = "ie"\n', ""),
        r"jurisdiction `eu` has several regions \(`ie`, `no`\) and no `default_region`$",
        id="several-regions-no-default",
    ),
    pytest.param(
        MINIMAL.replace('default_region = "ie"', 'default_region = "sg"'),
        r"`default_region` `sg` of jurisdiction `eu` is not one of its regions$",
        id="default-region-of-other-jurisdiction",
    ),
    pytest.param(
        MINIMAL.replace("{data_dir}/sg.db", "{datadir}/sg.db"),
        r"`storage` in region `sg` may use only the placeholder `\{data_dir\}`",
        id="unknown-placeholder",
    ),
    pytest.param(
        MINIMAL.replace("{data_dir}/sg.db", "{data_dir/sg.db"),
        r"`storage` in region `sg` may use only the placeholder",
        id="unbalanced-brace",
    ),
    pytest.param(
        MINIMAL.replace('version = "t1"', ""),
        r"the top level has no `version`$",
        id="no-version",
    ),
    pytest.param(
        'version = "1"\n[regions]\n',
        r"the top level has no `jurisdictions` table$",
        id="no-jurisdictions-table",
    ),
    pytest.param(
        'version = "1"\njurisdictions = {}\nregions = {}\n',
        r"defines no jurisdiction$",
        id="empty-jurisdictions",
    ),
    pytest.param(
        MINIMAL.replace('[regions.sg]\njurisdiction = "rest"', "[regions.sg]\njurisdiction = 4"),
        r"`jurisdiction` in region `sg` must be a string$",
        id="jurisdiction-not-a-string",
    ),
    pytest.param(
        MINIMAL.replace('countries = ["NO"]', 'countries = "NO"'),
        r"`countries` in region `no` must be a list of ISO 3166-1 alpha-2 codes$",
        id="override-not-a-list",
    ),
    pytest.param(
        MINIMAL.replace('countries = "*"\n', ""),
        r'jurisdiction `rest` has no `countries` \(a list of ISO codes, or "\*"\)$',
        id="jurisdiction-without-countries",
    ),
    pytest.param(
        'version = "1"\njurisdictions = 3\n[regions]\n',
        r"`jurisdictions` in the top level must be a table$",
        id="jurisdictions-not-a-table",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), INVALID)
def test_invalid_topologies(text: str, pattern: str) -> None:
    with pytest.raises(TopologyError, match=pattern) as info:
        parse_topology(text, source="t.toml")
    message = str(info.value)
    assert message.startswith("topology `t.toml`: ")
    assert message == message.rstrip(".")
    assert message[0].islower()


def test_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_topology(path) == parse_topology(MINIMAL)


def test_load_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.replace('location = "SG"', 'location = "ZZ"'), encoding="utf-8")
    with pytest.raises(TopologyError, match=rf"^topology `{re.escape(str(path))}`: .*`ZZ`"):
        load_topology(path)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"^cannot read topology `.*missing\.toml`: "):
        load_topology(tmp_path / "missing.toml")


def test_load_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"version = '\xe9'\n")
    with pytest.raises(TopologyError, match=r"is not UTF-8 text$"):
        load_topology(path)


def test_default_file_is_a_valid_topology_file() -> None:
    path = Path(__file__).resolve().parents[3] / "src/domicile/residency/default_topology.toml"
    assert load_topology(path).digest() == load_topology().digest()
