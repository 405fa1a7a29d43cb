"""Prepared pages: the classifier's answers, the gateway's sealing, the reference digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from domicile.catalog.catalog import load_catalog
from domicile.errors import ConfigError, InvalidInput, StorageError
from domicile.gateway.pipeline import is_subject_id
from domicile.keys.envelope import field_aad, open_sealed
from domicile.migrate.classify import Classifier, Placement
from domicile.migrate.demo_source import MAPPING_TEMPLATE, create_demo_source, demo_rows
from domicile.migrate.digest import batch_root, record_digest
from domicile.migrate.feeder import prepared_pages
from domicile.migrate.mapping import parse_mapping
from domicile.migrate.prepare import Preparer, PrepareSpec, new_subject_ids
from domicile.migrate.source import LegacySource
from domicile.residency.topology import iso_country_codes, load_topology
from domicile.vault.store import pack_sealed

CATALOG = load_catalog()
TOPOLOGY = load_topology()
SECRET = bytes(range(32))


def _routes() -> dict[str, str]:
    routes = {}
    for code in iso_country_codes():
        try:
            routes[code] = TOPOLOGY.home_region(code)
        except InvalidInput:
            continue
    return routes


def _spec(fields: tuple[str, ...]) -> PrepareSpec:
    return PrepareSpec("source-1", SECRET, fields, _routes(), dict(CATALOG.fields), 65_536)


MAPPING = parse_mapping(MAPPING_TEMPLATE.format(table="users_sg"), CATALOG)
SPEC = _spec(tuple(MAPPING.columns.values()))
EXTRA_ROWS = [
    (10_001, " de ", "  Lena Vogel ", " Lena@Example.ORG ", None, None, None, None, None),
    (10_002, "ß", "x", None, None, None, None, None, None),
    (10_003, 49, "x", None, None, None, None, None, None),
    (10_004, "NO", None, None, None, None, None, None, None),
    (10_005, "IE", "x" * 300, None, None, None, None, None, None),
    (10_006, "IE", "Ana", None, None, None, "::FFFF:1.2.3.4", None, -3),
]  # fmt: skip


def test_prepared_pages_place_and_quarantine_rows_as_the_classifier_does() -> None:
    rows = [*demo_rows(3000, seed=3), *EXTRA_ROWS]
    page = Preparer(SPEC).prepare(rows)
    classifier = Classifier(MAPPING, TOPOLOGY, CATALOG, 65_536)
    expected = classifier.classify_all(rows)
    placed = {p.key: p for p in expected if isinstance(p, Placement)}
    quarantined = {q.key: q.reason for q in expected if not isinstance(q, Placement)}
    assert {q.key: q.reason for q in page.quarantined} == quarantined
    assert quarantined["i:10002"] == "unknown-country"
    assert quarantined["i:10003"] == "unknown-country"
    assert quarantined["i:10004"] == "no-values"
    assert quarantined["i:10005"] == "payload-too-large:full_name"
    assert quarantined["i:10006"] == "invalid-field-value:follower_count"
    got = {key: b.region for b in page.batches for key in b.keys}
    assert got == {key: p.region for key, p in placed.items()}
    assert page.rows == len(rows)
    assert page.last_id == 10_006
    for batch in page.batches:
        assert batch.sample == placed[batch.keys[0]].values
        assert [k for k in placed if placed[k].region == batch.region] == batch.keys


def test_sealed_values_open_like_the_gateways_and_digests_match_the_reference() -> None:
    rows = list(demo_rows(500, seed=4))
    page = Preparer(SPEC).prepare(rows)
    placed = {
        p.key: p
        for p in Classifier(MAPPING, TOPOLOGY, CATALOG, 65_536).classify_all(rows)
        if isinstance(p, Placement)
    }
    for batch in page.batches:
        keys = dict(zip(batch.subject_ids, batch.data_keys, strict=True))
        opened: dict[str, dict[str, object]] = {}
        for subject_id, text in zip(batch.subject_ids, batch.stored, strict=True):
            sealed = {name: bytes.fromhex(value) for name, value in orjson.loads(text).items()}
            assert text == pack_sealed(sealed)  # what the vault itself would store
            for name, blob in sealed.items():
                aad = field_aad(subject_id, batch.region, name)
                plain = open_sealed(keys[subject_id], blob, aad)
                opened.setdefault(subject_id, {})[name] = CATALOG.decode(name, plain)
        for key, subject_id, digest in zip(
            batch.keys, batch.subject_ids, batch.digests, strict=True
        ):
            values = placed[key].values
            assert opened[subject_id] == values
            assert digest == record_digest(
                SECRET, "source-1", key, batch.region, subject_id, values
            )
        assert batch.root == batch_root(batch.digests)


def test_subject_ids_are_uuid7_shaped_sorted_and_distinct() -> None:
    ids = new_subject_ids(5000, now_ms=1_700_000_000_000)
    assert ids == sorted(ids)
    assert len(set(ids)) == 5000
    assert all(is_subject_id(i) for i in ids)
    assert {i[12] for i in ids} == {"7"}  # version
    assert {i[16] for i in ids} <= set("89ab")  # RFC 9562 variant
    assert {i[:12] for i in ids} == {f"{1_700_000_000_000:012x}"}
    later = new_subject_ids(10, now_ms=1_700_000_000_001)
    assert max(ids) < min(later)


def _demo(tmp_path: Path, rows: int) -> LegacySource:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    mapping = parse_mapping(create_demo_source(url, rows, "singapore", seed=9), CATALOG)
    return LegacySource(url, mapping)


def _all_pages(source: LegacySource, **options: Any) -> list[Any]:
    with prepared_pages(source, SPEC, 300, **options) as pages:
        return list(pages)


def test_a_preparing_process_gives_what_this_process_gives(tmp_path: Path) -> None:
    source = _demo(tmp_path, 700)
    try:
        here = _all_pages(source, process=False)
        there = _all_pages(source, process=True)
    finally:
        source.close()
    assert [p.rows for p in there] == [300, 300, 100]
    assert [p.last_id for p in there] == [p.last_id for p in here]
    assert [p.quarantined for p in there] == [p.quarantined for p in here]
    for a, b in zip(here, there, strict=True):
        assert [(x.region, x.keys, x.sample) for x in a.batches] == [
            (x.region, x.keys, x.sample) for x in b.batches
        ]


def test_a_pool_of_preparing_processes_gives_the_pages_in_order(tmp_path: Path) -> None:
    source = _demo(tmp_path, 1900)
    try:
        here = _all_pages(source, process=False)
        there = _all_pages(source, process=True, workers=3)
        with prepared_pages(source, SPEC, 300, process=True, workers=2) as pages:
            first = next(pages)  # the writer stops early: nothing is left behind
    finally:
        source.close()
    assert [p.rows for p in there] == [300] * 6 + [100]
    assert [p.last_id for p in there] == [p.last_id for p in here]
    assert [p.quarantined for p in there] == [p.quarantined for p in here]
    for a, b in zip(here, there, strict=True):
        assert [(x.region, x.keys, x.sample) for x in a.batches] == [
            (x.region, x.keys, x.sample) for x in b.batches
        ]
    assert first.last_id == here[0].last_id


def test_a_pool_reports_a_failure_to_read_and_to_prepare(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    mapping = parse_mapping(create_demo_source(url, 700, "singapore", seed=9), CATALOG)
    source = LegacySource(url, mapping)
    try:
        broken = PrepareSpec("source-1", SECRET, SPEC.fields, _routes(), {}, 65_536)
        with (
            pytest.raises(StorageError, match="preparing process failed: KeyError"),
            prepared_pages(source, broken, 300, process=True, workers=2) as pages,
        ):
            list(pages)
        source.db.close()
        (tmp_path / "legacy.db").unlink()  # gone: the reader's query fails
        with (
            pytest.raises(StorageError),
            prepared_pages(source, SPEC, 300, process=True, workers=2) as pages,
        ):
            list(pages)
    finally:
        source.close()


def test_a_preparing_process_reports_its_failure(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    mapping = parse_mapping(create_demo_source(url, 10, "singapore", seed=9), CATALOG)
    source = LegacySource(url, mapping)
    (tmp_path / "legacy.db").unlink()  # gone before the process opens it
    try:
        with (
            pytest.raises(ConfigError, match="does not exist"),
            prepared_pages(source, SPEC, 300, process=True) as pages,
        ):
            list(pages)
    finally:
        source.close()
