"""C2SP tlog-cosignature cosignature/v1 (Ed25519, signature type 0x04)."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import IntegrityError, MalformedNote
from domicile.ledger.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from domicile.ledger.cosignature import (
    MAX_TIMESTAMP,
    CosignatureVerifier,
    Cosigner,
    cosign_checkpoint,
    cosignature_timestamp,
    cosigned_message,
    generate_cosigner_key,
    open_cosignature,
    parse_cosigner_key,
    verify_cosignature,
)
from domicile.ledger.note import (
    Ed25519Signer,
    NoteSignature,
    Verifier,
    open_note,
    parse_note,
    parse_verifier_key,
    sign_note,
)

# The example of https://c2sp.org/tlog-cosignature ("Format").
SPEC_NOTE = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2"
    "q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2"
    "oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
# A live witness key, from transparency-dev/formats note_cosigv1_test.go.
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
SEED = bytes(range(32))
CHECKPOINT = parse_checkpoint(
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_spec_example_timestamp() -> None:
    note = parse_note(SPEC_NOTE)
    witness = note.signatures[1]
    assert witness.name == "witness.example.com/w1"
    assert witness.key_id == 0x8D66CF3F
    # The spec's signed-message example uses the same time.
    assert cosignature_timestamp(witness) == 1679315147


def test_formats_timestamp_known_answer() -> None:
    # transparency-dev/formats TestCosignatureTimestamp.
    raw = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFi"
        "EBYJXORmnFBOBA=="
    )
    sig = NoteSignature("w", int.from_bytes(raw[:4], "big"), raw[4:])
    assert cosignature_timestamp(sig) == 1727964367
    plain = base64.b64decode(
        "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    )
    with pytest.raises(MalformedNote):
        cosignature_timestamp(NoteSignature("w", 1, plain[4:]))


def test_live_witness_key_parses() -> None:
    verifier = parse_cosigner_key(REMORA_VKEY)
    assert verifier.name == "remora.n621.de"
    assert verifier.key_id == 0xDA77ADE7
    assert verifier.verifier_key == REMORA_VKEY
    assert CosignatureVerifier.from_key(REMORA_VKEY) == verifier
    # The same material as a plain note key (type 0x01) is not a witness key.
    with pytest.raises(MalformedNote):
        parse_cosigner_key("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert parse_verifier_key("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    with pytest.raises(MalformedNote):
        parse_verifier_key(REMORA_VKEY)


def test_cosignature_is_byte_exact() -> None:
    cosigner = Cosigner("witness.example.com/w1", SEED)
    public = Ed25519PrivateKey.from_private_bytes(SEED).public_key().public_bytes_raw()
    want_id = hashlib.sha256(b"witness.example.com/w1\n\x04" + public).digest()[:4]
    assert cosigner.key_id == int.from_bytes(want_id, "big")
    body = format_checkpoint(CHECKPOINT).encode()
    message = b"cosignature/v1\ntime 1679315147\n" + body
    assert cosigned_message(body, 1679315147) == message
    want = (1679315147).to_bytes(8, "big") + Ed25519PrivateKey.from_private_bytes(SEED).sign(
        message
    )
    sig = cosign_checkpoint(CHECKPOINT, cosigner, 1679315147)
    assert sig == NoteSignature("witness.example.com/w1", cosigner.key_id, want)
    assert sig.line.startswith("— witness.example.com/w1 " + base64.b64encode(want_id).decode()[:5])
    assert open_cosignature(CHECKPOINT, sig, cosigner.verifier()) == 1679315147


def test_generated_keys_round_trip() -> None:
    skey, vkey = generate_cosigner_key("witness.example/w")
    cosigner = Cosigner.from_key(skey)
    verifier = parse_cosigner_key(vkey)
    assert cosigner.verifier() == verifier
    assert "PRIVATE" not in repr(cosigner)
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x04
    # A cosigner key is not a note signing key, and the other way round.
    with pytest.raises(MalformedNote):
        Ed25519Signer.from_key(skey)
    note_skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    with pytest.raises(MalformedNote):
        Cosigner.from_key(note_skey)
    with pytest.raises(MalformedNote):
        Cosigner.from_key(skey.replace("+KEY+witness", "+KEY+wetness"))
    with pytest.raises(MalformedNote):
        generate_cosigner_key("bad name")


def test_witnessing_a_signed_checkpoint() -> None:
    log_signer = Ed25519Signer("example.com/log", bytes(32))
    checkpoint = Checkpoint("example.com/log", 7, bytes(range(32)))
    note = sign_note(checkpoint.text, [log_signer])
    witnesses = [Cosigner(f"witness.example/{i}", bytes([i]) * 32) for i in range(3)]
    cosigs = [w.cosign(checkpoint, 1_700_000_000 + i) for i, w in enumerate(witnesses)]
    cosigned = sign_note(checkpoint.text, [], keep=[*parse_note(note).signatures, *cosigs])
    verifiers: list[Verifier] = [log_signer.verifier(), *(w.verifier() for w in witnesses[:2])]
    opened = open_note(cosigned, verifiers)
    assert [s.name for s in opened.verified] == [
        "example.com/log",
        "witness.example/0",
        "witness.example/1",
    ]
    assert [s.name for s in opened.unverified] == ["witness.example/2"]
    times = [cosignature_timestamp(s) for s in opened.verified[1:]]
    assert times == [1_700_000_000, 1_700_000_001]
    # A plain note verifier with the witness's name and key is a different key id.
    same_key = Ed25519Signer("witness.example/0", bytes([0]) * 32).verifier()
    assert same_key.key_id != witnesses[0].key_id
    with pytest.raises(IntegrityError):
        open_note(cosigned, [same_key])


def test_verification_failures() -> None:
    cosigner = Cosigner("w", SEED)
    verifier = cosigner.verifier()
    sig = cosigner.cosign(CHECKPOINT, 100)
    verify_cosignature(CHECKPOINT, sig, verifier)
    other = Checkpoint(CHECKPOINT.origin, CHECKPOINT.size + 1, CHECKPOINT.root_hash)
    with pytest.raises(IntegrityError):
        verify_cosignature(other, sig, verifier)
    moved = NoteSignature(sig.name, sig.key_id, (101).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(IntegrityError):
        verify_cosignature(CHECKPOINT, moved, verifier)
    with pytest.raises(IntegrityError):
        verify_cosignature(CHECKPOINT, sig, Cosigner("w2", SEED).verifier())
    with pytest.raises(IntegrityError):
        verify_cosignature(CHECKPOINT, sig, Cosigner("w", bytes(32)).verifier())
    short = NoteSignature(sig.name, sig.key_id, sig.signature[:-1])
    with pytest.raises(MalformedNote):
        verify_cosignature(CHECKPOINT, short, verifier)
    huge = NoteSignature(sig.name, sig.key_id, (1 << 63).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(MalformedNote):
        verify_cosignature(CHECKPOINT, huge, verifier)
    assert not verifier.is_valid_signature(CHECKPOINT.text.encode(), huge.signature)
    assert not verifier.is_valid_signature(CHECKPOINT.text.encode(), short.signature)


def test_timestamp_bounds() -> None:
    cosigner = Cosigner("w", SEED)
    assert open_cosignature(CHECKPOINT, cosigner.cosign(CHECKPOINT, 0), cosigner.verifier()) == 0
    top = cosigner.cosign(CHECKPOINT, MAX_TIMESTAMP)
    assert open_cosignature(CHECKPOINT, top, cosigner.verifier()) == MAX_TIMESTAMP
    for bad in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(MalformedNote):
            cosigner.cosign(CHECKPOINT, bad)


@given(st.text(max_size=120))
@settings(max_examples=200, deadline=None)
def test_arbitrary_key_strings_raise_only_malformed_note(text: str) -> None:
    for parse in (parse_cosigner_key, Cosigner.from_key):
        with contextlib.suppress(MalformedNote):
            parse(text)


@given(st.binary(max_size=100), st.integers(min_value=0, max_value=MAX_TIMESTAMP))
@settings(max_examples=100, deadline=None)
def test_arbitrary_signatures_do_not_verify(raw: bytes, timestamp: int) -> None:
    verifier = Cosigner("w", SEED).verifier()
    signature = timestamp.to_bytes(8, "big") + raw
    assert not verifier.is_valid_signature(CHECKPOINT.text.encode(), signature)
    with contextlib.suppress(MalformedNote, IntegrityError):
        verify_cosignature(CHECKPOINT, NoteSignature("w", verifier.key_id, signature), verifier)
        pytest.fail("a random cosignature verified")
