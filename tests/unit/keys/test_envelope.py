"""Envelope encryption: values bound to subject, region and field; tampering detected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domicile.errors import IntegrityError
from domicile.keys.envelope import field_aad, new_data_key, open_sealed, seal

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
