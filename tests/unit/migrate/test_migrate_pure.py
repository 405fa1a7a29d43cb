"""Mapping, classification, digests and certificate text: pure pieces of `domicile.migrate`."""

from __future__ import annotations

import pytest

from domicile.catalog.catalog import load_catalog
from domicile.errors import ConfigError, MalformedNote
from domicile.ledger.merkle import leaf_hash, root_from_leaves
from domicile.migrate.certificate import BatchLine, Certificate, parse_certificate
from domicile.migrate.classify import Classifier, Placement, Quarantined
from domicile.migrate.digest import batch_root, record_digest
from domicile.migrate.mapping import parse_mapping
from domicile.migrate.source import legacy_id, legacy_key
from domicile.residency.topology import load_topology

MAPPING = """
table = "users"
id_column = "id"
country_column = "country"
[columns]
name = "full_name"
email = "email"
"""


def test_mapping_parses_and_checks_fields() -> None:
    spec = parse_mapping(MAPPING, load_catalog())
    assert spec.table == "users"
    assert dict(spec.columns) == {"name": "full_name", "email": "email"}
    assert spec.on_moved == "delete"
    assert not spec.tombstones


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MAPPING.replace('"email"\n', '"nope"\n'), "unknown field"),
        (MAPPING.replace('"users"', '"users; drop"'), "identifier"),
        (MAPPING + 'on_moved = "shred"\n', "on_moved"),
        ('table = "t"\nid_column = "i"\ncountry_column = "c"\n', "columns"),
        (MAPPING.replace('table = "users"', 'table = "users"\nextra = 1'), "unknown key"),
    ],
)
def test_mapping_refuses_bad_files(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_mapping(text, load_catalog())


def test_tombstone_mapping_needs_a_column() -> None:
    text = MAPPING.replace("[columns]", 'on_moved = "tombstone"\n[columns]')
    with pytest.raises(ConfigError, match="tombstone_column"):
        parse_mapping(text, load_catalog())


def test_legacy_keys_round_trip_their_type() -> None:
    assert legacy_id(legacy_key(42)) == 42
    assert legacy_id(legacy_key("a:b")) == "a:b"


def test_classifier_places_valid_rows_and_quarantines_without_values() -> None:
    spec = parse_mapping(MAPPING, load_catalog())
    classifier = Classifier(spec, load_topology(), load_catalog())
    ok = classifier.classify((1, "de", "Lena Vogel", "lena@example.org"))
    assert isinstance(ok, Placement)
    assert ok.region == "eu-ie"
    assert classifier.classify((2, "NO", "Ingrid", None)).region == "eu-no"  # type: ignore[union-attr]
    cases = {
        (3, None, "x", "x@example.org"): "missing-country",
        (4, " ", "x", "x@example.org"): "missing-country",
        (5, "XX", "x", "x@example.org"): "unknown-country",
        (6, "DE", "x", "lena-at-example"): "invalid-field-value:email",
        (7, "DE", None, None): "no-values",
    }
    for row, reason in cases.items():
        out = classifier.classify(row)
        assert isinstance(out, Quarantined)
        assert out.reason == reason
        assert "lena" not in out.reason


def test_digest_is_keyed_and_root_is_rfc9162() -> None:
    a = record_digest(b"k" * 32, "src", "i:1", "eu-ie", "s" * 32, {"email": "a@example.org"})
    b = record_digest(b"j" * 32, "src", "i:1", "eu-ie", "s" * 32, {"email": "a@example.org"})
    c = record_digest(b"k" * 32, "src", "i:1", "eu-ie", "s" * 32, {"email": "b@example.org"})
    assert len({a, b, c}) == 3
    assert batch_root([a, c]) == root_from_leaves([leaf_hash(a), leaf_hash(c)])


def test_certificate_text_round_trips() -> None:
    cert = Certificate("src", "sqlite:///x#t", "delete", 3, 1, "2026-01-01T00:00:00Z")
    cert.checkpoints["eu-ie"] = (9, b"\x01" * 32)
    cert.batches.append(BatchLine("eu-ie", 4, "b" * 32, 3, b"\x02" * 32))
    back = parse_certificate(cert.text())
    assert back == cert
    with pytest.raises(MalformedNote):
        parse_certificate("something else\n")
