"""Envelope encryption: values bound to subject, region and field; tampering detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.errors import IntegrityError
from domicile.keys.envelope import field_aad, new_data_key, open_fields, open_sealed, seal

names = st.text(min_size=1, max_size=20)


@given(st.binary(max_size=512), names, names, names)
def test_seal_open_round_trip(plaintext: bytes, subject: str, region: str, field: str) -> None:
    key = new_data_key()
    aad = field_aad(subject, region, field)
    assert open_sealed(key, seal(key, plaintext, aad), aad) == plaintext


@pytest.mark.parametrize(
    "other",
    [("s2", "eu-ie", "email"), ("s1", "us", "email"), ("s1", "eu-ie", "phone")],
    ids=["other-subject", "other-region", "other-field"],
)
def test_ciphertext_cannot_be_swapped(other: tuple[str, str, str]) -> None:
    key = new_data_key()
    sealed = seal(key, b"aoife@example.org", field_aad("s1", "eu-ie", "email"))
    with pytest.raises(IntegrityError):
        open_sealed(key, sealed, field_aad(*other))


def test_aad_parts_cannot_be_shifted() -> None:
    assert field_aad("ab", "c", "d") != field_aad("a", "bc", "d")


@given(st.integers(min_value=0, max_value=40 * 8 - 1))
def test_any_flipped_bit_is_detected(bit: int) -> None:
    key = new_data_key()
    aad = field_aad("s", "r", "f")
    sealed = bytearray(seal(key, b"x" * 11, aad))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        open_sealed(key, bytes(sealed), aad)


def test_wrong_key_and_truncation_are_detected() -> None:
    aad = field_aad("s", "r", "f")
    sealed = seal(new_data_key(), b"value", aad)
    with pytest.raises(IntegrityError):
        open_sealed(new_data_key(), sealed, aad)
    with pytest.raises(IntegrityError):
        open_sealed(new_data_key(), sealed[:10], aad)


@given(st.dictionaries(names, st.binary(max_size=64), max_size=6), names, names)
def test_open_fields_opens_what_open_sealed_opens(
    values: dict[str, bytes], subject: str, region: str
) -> None:
    key = new_data_key()
    sealed = {n: seal(key, v, field_aad(subject, region, n)) for n, v in values.items()}
    assert open_fields(key, subject, region, sealed) == values


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # a flipped bit in the tag
        lambda b: b[:28],  # shorter than a version byte, nonce and tag
        lambda b: b"\x02" + b[1:],  # a format version that does not exist
        lambda b: b[:13] + bytes([b[13] ^ 1]) + b[14:],  # a flipped bit in the ciphertext
    ],
    ids=["tag", "truncated", "version", "ciphertext"],
)
def test_open_fields_refuses_a_damaged_value(damage: object) -> None:
    key = new_data_key()
    sealed = {n: seal(key, b'"value"', field_aad("s1", "eu-ie", n)) for n in ("email", "phone")}
    sealed["phone"] = damage(sealed["phone"])  # type: ignore[operator]
    with pytest.raises(IntegrityError):
        open_fields(key, "s1", "eu-ie", sealed)


def test_open_fields_refuses_a_value_moved_to_another_field() -> None:
    key = new_data_key()
    sealed = {n: seal(key, b'"value"', field_aad("s1", "eu-ie", n)) for n in ("email", "phone")}
    sealed["email"], sealed["phone"] = sealed["phone"], sealed["email"]
    with pytest.raises(IntegrityError, match="does not verify"):
        open_fields(key, "s1", "eu-ie", sealed)
