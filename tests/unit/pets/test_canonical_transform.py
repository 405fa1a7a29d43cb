"""The export fast path gives exactly what the reference transforms give: the batched
base32 of pseudonyms, the precomputed HMAC states, and `CanonicalTransform` over the
canonical bytes a vault stores."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.catalog.catalog import JsonValue, load_catalog
from domicile.errors import InvalidFieldValue
from domicile.pets import FITS, FieldPlan, LocalPetKeys, pseudonymise, transform_values
from domicile.pets.keyed import KeyedMac, Pseudonymiser, canonical_value, encode_pseudonyms
from domicile.pets.transform import CanonicalTransform

KEYS = LocalPetKeys("eu-ie", b"\x05" * 32)
CATALOG = load_catalog()
# One example value per catalog field, as a registration would give it.
EXAMPLES = {
    "full_name": "Aoife Murphy", "email": "aoife@example.org", "phone": "+353871234567",
    "birth_date": "1991-02-03", "ip_address": "192.0.2.77",
    "precise_location": {"lat": 53.35, "lon": -6.26}, "device_id": "dev-1f2e",
    "advertising_id": "38400000-8cf0-11bd-b23e-10b96e40000d", "iban": "IE29AIBK93115212345678",
    "private_messages": "see you at 8", "display_name": "Aoife", "bio": "sea swimmer",
    "privacy_settings": {"public": False}, "coarse_location": "IE", "follower_count": 12,
    "like_count": 3, "username": "aoifem", "avatar_url": "https://example.org/a.png",
}  # fmt: skip


@given(macs=st.lists(st.binary(min_size=20, max_size=20), max_size=12))
def test_batched_base32_equals_the_standard_library(macs: list[bytes]) -> None:
    assert encode_pseudonyms(macs) == [
        "ps_" + base64.b32encode(m).decode("ascii").lower() for m in macs
    ]


@given(key=st.binary(min_size=0, max_size=100), prefix=st.binary(max_size=80), msg=st.binary())
def test_keyed_mac_is_hmac_sha256(key: bytes, prefix: bytes, msg: bytes) -> None:
    assert KeyedMac(key, prefix).digest(msg) == hmac.digest(key, prefix + msg, hashlib.sha256)


@given(value=st.text(max_size=60) | st.integers() | st.booleans())
def test_pseudonymiser_over_canonical_bytes_equals_pseudonymise(value: JsonValue) -> None:
    try:
        canonical = canonical_value("email", value)
    except InvalidFieldValue:  # a lone surrogate is not JSON; pseudonymise refuses it too
        return
    key = KEYS.pseudonym_key("dom")
    expected = pseudonymise("email", value, key)
    assert Pseudonymiser(key, "email").of_canonical(canonical) == expected


@settings(max_examples=60)
@given(choice=st.data())
def test_canonical_transform_equals_transform_values(choice: st.DataObject) -> None:
    plan: dict[str, FieldPlan] = {}
    for name, spec in CATALOG.fields.items():
        fitting = sorted(t for t, types in FITS.items() if types is None or spec.type in types)
        plan[name] = FieldPlan(name, spec.type, choice.draw(st.sampled_from(fitting)))
    values = CATALOG.validate(EXAMPLES)
    canonical = {name: CATALOG.encode(name, value) for name, value in values.items()}
    fast = CanonicalTransform(plan, KEYS, domain="eu-us", decode=CATALOG.decode)
    assert fast.apply(canonical) == transform_values(plan, values, KEYS, domain="eu-us")


@settings(max_examples=40)
@given(choice=st.data())
def test_a_page_transformed_at_once_equals_each_record_on_its_own(choice: st.DataObject) -> None:
    """`apply_many` encodes the pseudonyms of a whole page in one pass; every record still
    gets exactly its own fields, whatever each record holds (none, some, all)."""
    plan: dict[str, FieldPlan] = {}
    for name, spec in CATALOG.fields.items():
        fitting = sorted(t for t, types in FITS.items() if types is None or spec.type in types)
        plan[name] = FieldPlan(name, spec.type, choice.draw(st.sampled_from(fitting)))
    values = CATALOG.validate(EXAMPLES)
    subsets = choice.draw(st.lists(st.sets(st.sampled_from(sorted(values))), max_size=8))
    records = [{name: values[name] for name in sorted(subset)} for subset in subsets]
    canonical = [{n: CATALOG.encode(n, v) for n, v in record.items()} for record in records]
    fast = CanonicalTransform(plan, KEYS, domain="eu-us", decode=CATALOG.decode)
    assert fast.apply_many(canonical) == [
        transform_values(plan, record, KEYS, domain="eu-us") for record in records
    ]
