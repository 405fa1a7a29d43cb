"""C2SP signed notes: known answers from golang.org/x/mod/sumdb/note, round trips, strictness."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import IntegrityError, LedgerError, MalformedNote
from domicile.ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Ed25519Signer,
    Ed25519Verifier,
    NoteSignature,
    decode_base64,
    format_note,
    generate_signer_key,
    is_valid_key_name,
    key_id,
    open_note,
    parse_note,
    parse_verifier_key,
    sign_note,
)

# Known-answer keys and notes of golang.org/x/mod/sumdb/note (note.go, note_test.go).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
)


def _insert(line: str, at: int, extra: str) -> str:
    # Go slices these lines by bytes, and the em dash is three bytes long.
    raw = line.encode("utf-8")
    return (raw[:at] + extra.encode("ascii") + raw[at:]).decode("utf-8")


@pytest.fixture
def peter() -> Ed25519Verifier:
    return parse_verifier_key(PETER_VKEY)


@pytest.fixture
def enoch() -> Ed25519Verifier:
    return parse_verifier_key(ENOCH_VKEY)


# --- keys ------------------------------------------------------------------


def test_known_keys_parse(peter: Ed25519Verifier) -> None:
    assert peter.name == "PeterNeumann"
    assert peter.key_id == 0xC74F20A3
    assert peter.verifier_key == PETER_VKEY
    signer = Ed25519Signer.from_key(PETER_SKEY)
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier() == peter
    assert "AYEK" not in repr(signer)
    assert repr(signer) == "Ed25519Signer(name='PeterNeumann', key_id=c74f20a3)"


def test_key_id_is_sha256_of_name_type_and_key(peter: Ed25519Verifier) -> None:
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + peter.public_key).digest()
    assert peter.key_id == int.from_bytes(digest[:4], "big")
    assert key_id("PeterNeumann", b"\x01" + peter.public_key) == peter.key_id


def test_every_mangled_verifier_key_is_rejected() -> None:
    # note_test.go TestNewVerifier: substrings and single-byte changes.
    raw = PETER_VKEY.encode("ascii")
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(MalformedNote):
                    parse_verifier_key(raw[i:j].decode("ascii"))
    for i in range(len(raw)):
        mangled = bytearray(raw)
        mangled[i] += 1
        with pytest.raises(MalformedNote):
            parse_verifier_key(mangled.decode("ascii"))
    # Wrong key length and unknown algorithm, each with a matching key id.
    with pytest.raises(MalformedNote):
        parse_verifier_key(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(MalformedNote):
        parse_verifier_key("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_every_mangled_signer_key_is_rejected() -> None:
    raw = PETER_SKEY.encode("ascii")
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(MalformedNote):
                    Ed25519Signer.from_key(raw[i:j].decode("ascii"))
    for i in range(len(raw)):
        mangled = bytearray(raw)
        mangled[i] += 1
        with pytest.raises(MalformedNote):
            Ed25519Signer.from_key(mangled.decode("ascii"))


def test_key_strings_are_strict() -> None:
    for bad in [
        PETER_VKEY.upper(),
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
        PETER_VKEY + "\n",
        " " + PETER_VKEY,
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        PETER_VKEY + "+extra",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq+LDE4izWy10TW",
        "PeterNeumann+c74f20a3+",
    ]:
        with pytest.raises(MalformedNote):
            parse_verifier_key(bad)


def test_generated_keys_round_trip() -> None:
    skey, vkey = generate_signer_key("example.com/log")
    signer = Ed25519Signer.from_key(skey)
    verifier = parse_verifier_key(vkey)
    assert signer.verifier() == verifier
    assert verifier.verifier_key == vkey
    assert Ed25519Verifier.from_key(vkey) == verifier
    assert skey.startswith("PRIVATE+KEY+example.com/log+")
    message = b"hi"
    signature = signer.sign(message)
    assert verifier.is_valid_signature(message, signature)
    assert not verifier.is_valid_signature(b"ho", signature)
    assert not verifier.is_valid_signature(message, signature[:-1])
    with pytest.raises(MalformedNote):
        generate_signer_key("bad name")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/log", True),
        ("PeterNeumann", True),
        ("ünïcode/名前", True),
        ("", False),
        ("a b", False),
        ("a+b", False),
        ("a\tb", False),
        ("a\u00a0b", False),
        ("a\u2003b", False),
        ("a\u3000b", False),
        ("a\u0085b", False),
        ("a\x00b", False),
        ("a\x7f", True),
        ("a\ud800", False),
    ],
)
def test_key_names(name: str, valid: bool) -> None:
    assert is_valid_key_name(name) is valid


def test_base64_must_be_canonical() -> None:
    assert decode_base64("AQID") == b"\x01\x02\x03"
    assert decode_base64("") == b""
    for bad in ["AQI", "AQ==\n", "AR==", "AQ=", "AQID====", "A-_B", " AQID", "AQ==AQ=="]:
        with pytest.raises(MalformedNote):
            decode_base64(bad)


# --- signing and opening ---------------------------------------------------


def test_sign_known_answer() -> None:
    signer = Ed25519Signer.from_key(PETER_SKEY)
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG
    # A kept signature by the same key is replaced by the fresh one.
    stale = NoteSignature("PeterNeumann", 0xC74F20A3, b"stale")
    assert sign_note(TEXT, [signer], keep=[stale]) == TEXT + "\n" + PETER_SIG


def test_open_known_answers(peter: Ed25519Verifier, enoch: Ed25519Verifier) -> None:
    msg = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    opened = open_note(msg, [peter])
    assert opened.text == TEXT
    assert [(s.name, s.key_id) for s in opened.verified] == [("PeterNeumann", 0xC74F20A3)]
    assert [(s.name, s.key_id) for s in opened.unverified] == [("EnochRoot", 0xAF0CFE78)]
    assert opened.verified[0].line == PETER_SIG
    assert opened.unverified[0].line == ENOCH_SIG

    both = open_note(msg.encode("utf-8"), [peter, enoch])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"]
    assert both.unverified == ()

    with pytest.raises(IntegrityError):
        open_note(msg, [])


def test_open_rejects_a_bad_signature_from_a_known_key(peter: Ed25519Verifier) -> None:
    bad = _insert(PETER_SIG, 60, "ABCD")
    with pytest.raises(IntegrityError):
        open_note(TEXT + "\n" + bad, [peter])
    # Even when another signature by the same key is valid.
    with pytest.raises(IntegrityError):
        open_note(TEXT + "\n" + PETER_SIG + bad, [peter])
    # And when the text, not the signature, was changed.
    with pytest.raises(IntegrityError):
        open_note(TEXT.replace("cryptography", "cryptograph") + "\n" + PETER_SIG, [peter])


def test_open_keeps_duplicates_once(peter: Ed25519Verifier) -> None:
    enoch_abcd = _insert(ENOCH_SIG, 60, "ABCD")
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    opened = open_note(msg, [peter])
    assert [s.line for s in opened.verified] == [PETER_SIG]
    assert [s.line for s in opened.unverified] == [ENOCH_SIG, enoch_abcd]


def test_unknown_keys_sharing_a_name_or_id_are_ignored(peter: Ed25519Verifier) -> None:
    # Same name, other key id; and same key id, other name.
    other_id = PETER_SIG.replace("x08go", "x08gA")
    other_name = PETER_SIG.replace("PeterNeumann", "PeterNeuman")
    opened = open_note(TEXT + "\n" + other_id + other_name + PETER_SIG, [peter])
    assert [s.line for s in opened.verified] == [PETER_SIG]
    assert len(opened.unverified) == 2
    with pytest.raises(IntegrityError):
        open_note(TEXT + "\n" + other_id + other_name, [peter])


def test_too_many_signatures(peter: Ed25519Verifier) -> None:
    assert len(open_note(TEXT + "\n" + PETER_SIG * MAX_SIGNATURES, [peter]).verified) == 1
    with pytest.raises(MalformedNote):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [peter])
    with pytest.raises(MalformedNote):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [])


def test_ambiguous_verifiers_are_refused(peter: Ed25519Verifier) -> None:
    # A different key claiming the same name and id: the trust list is broken.
    impostor = Ed25519Verifier("PeterNeumann", bytes(32))

    class Twin:
        name = peter.name
        key_id = peter.key_id

        def is_valid_signature(self, message: bytes, signature: bytes) -> bool:
            return impostor.is_valid_signature(message, signature)

    with pytest.raises(LedgerError):
        open_note(TEXT + "\n" + PETER_SIG, [peter, Twin()])
    # The same key listed twice is fine.
    assert open_note(TEXT + "\n" + PETER_SIG, [peter, parse_verifier_key(PETER_VKEY)]).verified


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        "\x7f\x00" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXg"
        "KvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT.replace("\n", "\r\n") + "\r\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("—", "-"),
        TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        TEXT + "\n" + PETER_SIG.replace("Neumann ", "Neumann  "),
        TEXT + "\n" + PETER_SIG.replace("AM=", "AM"),
        TEXT + "\n" + "— PeterNeumann AAAAAA==\n",
        TEXT + "\n" + "— PeterNeumann \n",
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "\n",
        "",
    ],
)
def test_malformed_notes(msg: str, peter: Ed25519Verifier) -> None:
    with pytest.raises(MalformedNote):
        open_note(msg, [peter])


def test_malformed_bytes(peter: Ed25519Verifier) -> None:
    with pytest.raises(MalformedNote):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), [peter])
    with pytest.raises(MalformedNote):
        parse_note("\ud800\n\n" + PETER_SIG)
    with pytest.raises(MalformedNote):
        parse_note(b"x" * MAX_NOTE_SIZE + b"\n\n" + PETER_SIG.encode())


def test_multiple_signers_and_blank_lines_in_text() -> None:
    keys = [generate_signer_key(f"example.com/k{i}") for i in range(4)]
    signers = [Ed25519Signer.from_key(skey) for skey, _ in keys]
    verifiers = [parse_verifier_key(vkey) for _, vkey in keys]
    text = "first\n\nthird, after a blank line\n\n"
    note = sign_note(text, signers[:3])
    opened = open_note(note, verifiers[1:])
    assert opened.text == text
    assert [s.name for s in opened.verified] == ["example.com/k1", "example.com/k2"]
    assert [s.name for s in opened.unverified] == ["example.com/k0"]
    # A witness adds its signature and keeps everyone else's.
    resigned = sign_note(text, [signers[3]], keep=parse_note(note).signatures)
    assert resigned.startswith(note)
    assert len(open_note(resigned, verifiers).verified) == 4


def test_sign_and_format_checks() -> None:
    signer = Ed25519Signer.from_key(PETER_SKEY)
    for bad_text in ["no newline", "cr\r\n", "nul\x00\n", "\ud800\n"]:
        with pytest.raises(MalformedNote):
            sign_note(bad_text, [signer])
    with pytest.raises(MalformedNote):
        format_note(TEXT, [])
    sig = NoteSignature("a", 1, b"x")
    with pytest.raises(MalformedNote):
        format_note(TEXT, [sig] * (MAX_SIGNATURES + 1))
    with pytest.raises(MalformedNote):
        format_note("x" * MAX_NOTE_SIZE + "\n", [sig])
    for name, kid, raw in [("a b", 1, b"x"), ("a", -1, b"x"), ("a", 1 << 32, b"x"), ("a", 1, b"")]:
        with pytest.raises(MalformedNote):
            NoteSignature(name, kid, raw)
    with pytest.raises(MalformedNote):
        Ed25519Signer("name", b"short")
    with pytest.raises(MalformedNote):
        Ed25519Verifier("name", b"short")


# --- fuzzing ---------------------------------------------------------------


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_malformed_note(data: bytes) -> None:
    verifier = parse_verifier_key(PETER_VKEY)
    with contextlib.suppress(MalformedNote, IntegrityError):
        open_note(data, [verifier])


_NOTE_ALPHABET = st.sampled_from(["\n", "— ", " ", "+", "=", "/", "A", "a", "0", "é", "\r", "—"])


@given(st.lists(_NOTE_ALPHABET, max_size=80).map("".join))
@settings(max_examples=300, deadline=None)
def test_note_shaped_text_raises_only_ledger_errors(text: str) -> None:
    try:
        note = parse_note(text)
    except MalformedNote:
        return
    assert note.text.endswith("\n")
    assert format_note(note.text, note.signatures) == text


@given(st.text(max_size=120))
@settings(max_examples=300, deadline=None)
def test_arbitrary_key_strings_raise_only_malformed_note(text: str) -> None:
    for parse in (parse_verifier_key, Ed25519Signer.from_key, decode_base64):
        with contextlib.suppress(MalformedNote):
            parse(text)


@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=["Cs", "Cc"]),
            max_size=30,
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=100, deadline=None)
def test_any_text_round_trips(lines: list[str]) -> None:
    signer = Ed25519Signer.from_key(PETER_SKEY)
    text = "".join(line + "\n" for line in lines)
    note = sign_note(text, [signer])
    opened = open_note(note, [signer.verifier()])
    assert opened.text == text
    assert base64.b64decode(opened.verified[0].encoded)[:4] == bytes.fromhex("c74f20a3")
