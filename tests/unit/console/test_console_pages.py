"""What the console pages show: counts, residency, decisions, proofs, flows, no values."""

from __future__ import annotations

import re

from console_support import SUBJECTS, World

from domicile.console.index import DecisionIndex, Filters
from domicile.console.views import check_residency
from domicile.ledger.entry import decode_entry


def test_overview_shows_directory_counts_and_zero_outside(world: World) -> None:
    client = world.login("admin")
    html = client.get("/console/overview").text
    counts = world.runtime.directory.counts()
    assert sum(counts.values()) == SUBJECTS + 1
    for region, n in counts.items():
        row = re.search(rf'<tr data-region="{region}">.*?</tr>', html, re.S)
        assert row, region
        assert f'class="num subjects">{n:,}<' in row.group(0)
        size = world.runtime.logs[region].size
        assert re.search(r'class="num ledger-size">([\d,]+)<', row.group(0))
        assert (
            int(re.search(r'ledger-size">([\d,]+)<', row.group(0)).group(1).replace(",", ""))
            <= size
        )
    assert 'id="outside-count">0<' in html
    assert 'id="missing-count">0<' in html
    assert "<svg" in html


def test_no_page_shows_a_field_value(world: World) -> None:
    client = world.login("admin")
    for page in ("overview", "flows", "access", "access?region=eu-ie", "grants", "migration"):
        assert "@example.org" not in client.get(f"/console/{page}").text


def test_residency_check_finds_a_subject_stored_outside_its_home(world: World) -> None:
    before = check_residency(world.runtime)
    assert before.outside == 0
    assert before.missing == 0
    stray = "f" * 32
    world.runtime.gateway.regions["us"].vault.insert(stray, {}, "1")
    try:
        after = check_residency(world.runtime)
        assert after.outside == 1
        assert after.regions["us"].outside == 1
    finally:
        world.runtime.gateway.regions["us"].vault.discard(stray)


def test_access_lists_decisions_newest_first_and_searches_them(world: World) -> None:
    client = world.login("admin")
    client.get(f"/v1/subjects/{world.subject_ie}?purpose=support", headers=world.api("svc-us"))
    html = client.get("/console/access?region=eu-ie").text
    indices = [int(i) for i in re.findall(r'<tr data-index="(\d+)">', html)]
    assert indices == sorted(indices, reverse=True)
    assert len(indices) == 50
    log = world.runtime.logs["eu-ie"]
    assert decode_entry(log.entry(indices[0]))["kind"] == "decision"
    found = client.get("/console/access?region=eu-ie&principal=svc-us&result=deny").text
    principals = re.findall(r'class="principal">([^<]+)<', found)
    assert principals
    assert set(principals) == {"svc-us"}
    by_category = client.get("/console/access?region=eu-ie&category=restricted").text
    assert re.findall(r'<tr data-index="(\d+)">', by_category)


def test_access_pages_go_back_with_before(world: World) -> None:
    client = world.login("admin")
    first = client.get("/console/access?region=eu-ie").text
    older = re.search(r'id="older" href="([^"]+)"', first)
    assert older
    second = client.get(older.group(1).replace("&amp;", "&")).text
    last_of_first = int(re.findall(r'<tr data-index="(\d+)">', first)[-1])
    assert all(int(i) < last_of_first for i in re.findall(r'<tr data-index="(\d+)">', second))


def test_bad_search_input_keeps_what_was_typed(world: World) -> None:
    client = world.login("admin")
    response = client.get("/console/access?region=eu-ie&principal=svc-us&result=maybe")
    assert response.status_code == 400
    assert "decision must be `allow` or `deny`" in response.text
    assert 'value="svc-us"' in response.text
    assert 'value="maybe"' in response.text
    flows = client.get("/console/flows?from=2026-13-01&to=2026-01-01")
    assert flows.status_code == 400
    assert 'value="2026-13-01"' in flows.text


def test_proof_page_verifies_an_entry_with_the_pure_merkle_code(world: World) -> None:
    client = world.login("svc-eu")
    html = client.get("/console/access/eu-ie/3").text
    assert "Verifies:" in html
    log = world.runtime.logs["eu-ie"]
    from domicile.ledger.merkle import leaf_hash

    assert leaf_hash(log.entry(3)).hex() in html
    missing = client.get(f"/console/access/eu-ie/{log.size + 10}")
    assert missing.status_code == 404
    assert "has no entry" in missing.text
    bad = client.get("/console/access/eu-ie/x1")
    assert bad.status_code == 400
    assert "whole number" in bad.text
    assert client.get("/console/access/nowhere/1").status_code == 400


def test_flows_show_a_denied_cross_border_read(world: World) -> None:
    client = world.login("admin")
    world_api = world.client()
    with world_api:
        denied = world_api.get(
            f"/v1/subjects/{world.subject_ie}?fields=display_name&purpose=support",
            headers=world.api("svc-us"),
        )
    assert denied.status_code == 403
    html = client.get("/console/flows").text
    assert re.search(r"<td>eu-ie</td><td>US</td><td class=\"deny\">deny</td>", html)
    assert int(re.search(r'id="denied">([\d,]+)<', html).group(1)) >= 1


def test_the_index_grows_from_its_high_water_mark(world: World) -> None:
    log = world.runtime.logs["us"]
    index = DecisionIndex(log, world.runtime.catalog)
    reached = index.catch_up()
    assert reached == index.indexed() == log.size
    (row,) = world.runtime.directory.db.query(
        "SELECT id FROM subject_directory WHERE home_region = 'us' LIMIT 1"
    )
    with world.client() as client:
        client.get(f"/v1/subjects/{row[0]}?purpose=support", headers=world.api("svc-us"))
    assert index.catch_up() == log.size > reached
    rows = index.search(Filters(principal="svc-us"), None, 1000)
    assert rows
    assert all(r.principal == "svc-us" for r in rows)
