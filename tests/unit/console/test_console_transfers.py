"""The Access and Flows pages show the country a transfer's agreement sends the data to."""

from __future__ import annotations

import re

import pytest
from console_support import World

from transfer_support import register_irish, stored_agreement

ROW = re.compile(r'<tr data-index="(\d+)">(.*?)</tr>', re.S)
CELLS = re.compile(
    r'<td class="(allow|deny)">.*<td>([A-Z]*)</td><td class="destination-country">([A-Z]*)<', re.S
)


def _cells(html: str) -> list[tuple[str, str, str]]:
    """(decision, to, destination country) of each row of the decision table."""
    out = []
    for _, row in ROW.findall(html):
        found = CELLS.search(row)
        assert found, row
        out.append(found.groups())
    return out


@pytest.fixture(scope="module")
def exports(world: World) -> None:
    """An Irish officer exports Irish subjects (one decision each time) under an agreement
    to the US (allowed) and under an old one to Russia, a country of concern (denied)."""
    runtime = world.runtime
    svc = world.tokens["svc-eu"]
    officer = runtime.principals.add("officer-ie", "Trusted Security Partner EU", "IE", {"officer"})
    stored_agreement(runtime, "acme-us", "Acme Analytics", "US")
    stored_agreement(runtime, "old-ru", "Moscow Analytics", "RU")
    with world.client() as api:
        ids = register_irish(api, svc, [{"display_name": f"p{i}"} for i in range(6)])
        for agreement, status in (("acme-us", 200), ("old-ru", 403)):
            got = api.post("/v1/exports", headers={"Authorization": f"Bearer {officer}"}, json={
                "region": "eu-ie", "agreement": agreement, "subjects": ids,
                "fields": ["display_name"]})  # fmt: skip
            assert got.status_code == status, got.text


def test_a_transfer_decision_shows_its_destination_country(world: World, exports: None) -> None:
    html = world.login("admin").get("/console/access?region=eu-ie").text
    assert 'sends the data to">destination</th>' in html
    cells = _cells(html)
    # The officer asks from Ireland; the agreements send the data to the US and to Russia.
    assert cells[:2] == [("deny", "IE", "RU"), ("allow", "IE", "US")]
    assert all(country == "" for _, to, country in cells if not to)  # not transfers


def test_access_searches_by_destination_country(world: World, exports: None) -> None:
    client = world.login("admin")
    russia = client.get("/console/access?region=eu-ie&destination=ru").text
    assert 'id="destination" value="RU"' in russia
    assert _cells(russia) == [("deny", "IE", "RU")]
    us = client.get("/console/access?region=eu-ie&destination=US&result=allow").text
    assert _cells(us) == [("allow", "IE", "US")]
    assert _cells(client.get("/console/access?region=eu-ie&destination=US&result=deny").text) == []
    bad = client.get("/console/access?region=eu-ie&destination=USA")
    assert bad.status_code == 400
    assert "destination must be a two-letter country code" in bad.text
    assert 'value="USA"' in bad.text


def test_flows_go_to_the_agreement_s_country_not_the_officer_s(world: World, exports: None) -> None:
    html = world.login("admin").get("/console/flows").text
    assert re.search(r"<td>eu-ie</td><td>US</td><td class=\"allow\">allow</td>", html)
    assert re.search(r"<td>eu-ie</td><td>RU</td><td class=\"deny\">deny</td>", html)
    assert not re.search(r"<td>eu-ie</td><td>IE</td>", html)  # the officer asked from Ireland
