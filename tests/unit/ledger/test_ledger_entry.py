"""Ledger entries: one canonical encoding, and decoding that refuses anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import LedgerError
from domicile.ledger.entry import canonical_json, decode_entry, encode_entry


def reference(value: Any) -> bytes:
    """The canonical form as defined: Python's sorted, compact, ASCII-escaped JSON."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8"), max_size=6), children)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_fast_encoder_writes_the_reference_bytes(value: dict[str, Any]) -> None:
    assert canonical_json(value) == reference(value)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["a", "subject_ref", "input", "ü", "\x7f"]), json_values))
def test_encode_then_decode_round_trips(attributes: dict[str, Any]) -> None:
    data = encode_entry("decision", "eu-ie", "2026-11-23T06:00:00Z", attributes)
    assert data == reference(
        {"v": 1, "kind": "decision", "region": "eu-ie", "time": "2026-11-23T06:00:00Z"} | attributes
    )
    assert decode_entry(data) == json.loads(data)


@pytest.mark.parametrize("char", ["\x7f", "\x00", "\x1f", "é", "\u2028", "😀", '"', "\\"])
def test_characters_the_fast_path_cannot_write_take_the_slow_one(char: str) -> None:
    data = encode_entry("alert", "eu-ie", "t", {"alert": f"a{char}b"})
    assert data == reference(json.loads(data))
    assert decode_entry(data)["alert"] == f"a{char}b"


BASE = b'{"kind":"alert","region":"eu-ie","time":"t","v":1'


@pytest.mark.parametrize(
    "data",
    [
        BASE + b',"x":1.0}',  # a float
        BASE + b',"x":1e3}',  # a float in exponent form
        BASE + b',"x":NaN}',
        BASE + b', "x":1}',  # insignificant whitespace
        b'{"region":"eu-ie","kind":"alert","time":"t","v":1}',  # keys out of order
        BASE + b',"x":1,"x":2}',  # a duplicate key
        BASE + b',"x":"\x7f"}',  # DEL written raw: the canonical form escapes it
        BASE + b',"x":"\\u00e9"}'.replace(b"\\u00e9", "é".encode()),  # raw non-ASCII
        BASE + b',"x":"\\u0041"}',  # an escape the canonical form does not use
        BASE + b',"x":-0}',
        b'{"kind":"alert","region":"eu-ie","time":"t","v":2}',  # another version
        b'{"kind":"nope","region":"eu-ie","time":"t","v":1}',  # an unknown kind
        b'{"region":"eu-ie","time":"t","v":1}',  # no kind
        b"[1]",
        b"",
    ],
)
def test_non_canonical_entries_are_refused(data: bytes) -> None:
    with pytest.raises(LedgerError):
        decode_entry(data)


def test_big_integers_are_canonical_too() -> None:
    data = encode_entry("alert", "eu-ie", "t", {"n": 2**80, "m": -(2**64)})
    assert decode_entry(data)["n"] == 2**80


def test_encoding_refuses_floats_and_reserved_names() -> None:
    with pytest.raises(LedgerError, match="float"):
        encode_entry("alert", "eu-ie", "t", {"x": 1.5})  # type: ignore[dict-item]
    with pytest.raises(LedgerError, match="may not set"):
        encode_entry("alert", "eu-ie", "t", {"kind": "decision"})
    with pytest.raises(LedgerError, match="not known"):
        encode_entry("nope", "eu-ie", "t", {})
