"""C2SP tlog-checkpoint parsing and formatting."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domicile.errors import IntegrityError, MalformedNote
from domicile.ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from domicile.ledger.merkle import EMPTY_ROOT
from domicile.ledger.note import (
    Ed25519Signer,
    generate_signer_key,
    parse_note,
    parse_verifier_key,
    sign_note,
)

# The example of https://c2sp.org/tlog-checkpoint.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeO"
    "oRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def test_spec_example_parses_and_formats_back() -> None:
    checkpoint = parse_checkpoint(SPEC_BODY)
    assert checkpoint == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert format_checkpoint(checkpoint) == SPEC_BODY
    assert checkpoint.text == SPEC_BODY
    note = parse_note(SPEC_NOTE)
    assert note.text == SPEC_BODY
    assert note.signatures[0].name == "example.com/behind-the-sofa"
    assert note.signatures[0].key_id == 0x033DE0AE


def test_extensions_and_empty_tree() -> None:
    text = f"log\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\next one\n— not a signature\n"
    checkpoint = parse_checkpoint(text)
    assert checkpoint.size == 0
    assert checkpoint.root_hash == EMPTY_ROOT
    assert checkpoint.extensions == ("ext one", "— not a signature")
    assert format_checkpoint(checkpoint) == text


def test_largest_size() -> None:
    text = f"log\n{MAX_TREE_SIZE}\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(text).size == MAX_TREE_SIZE


_B64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "log\n1\n",
        f"log\n1\n{_B64}",
        f"\n1\n{_B64}\n",
        f"log\n01\n{_B64}\n",
        f"log\n00\n{_B64}\n",
        f"log\n+1\n{_B64}\n",
        f"log\n-1\n{_B64}\n",
        f"log\n 1\n{_B64}\n",
        f"log\n1 \n{_B64}\n",
        f"log\n1_000\n{_B64}\n",
        f"log\n١\n{_B64}\n",
        f"log\n0x10\n{_B64}\n",
        f"log\n\n{_B64}\n",
        f"log\n{MAX_TREE_SIZE + 1}\n{_B64}\n",
        f"log\n{'9' * 40}\n{_B64}\n",
        "log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
        "log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n",
        "log\n1\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n",
        "log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
        "log\n1\nAAAA\n",
        f"log\n1\n {_B64}\n",
        f"log\n1\n{_B64}\n\n",
        f"log\n1\n{_B64}\next\n\n",
        f"log\n1\n{_B64}\n\next\n",
        f"log\r\n1\n{_B64}\n",
        f"lo\x00g\n1\n{_B64}\n",
        f"log\n1\n{_B64}\next\tension\n",
        f"\ud800\n1\n{_B64}\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(MalformedNote):
        parse_checkpoint(text)


def test_constructor_validates() -> None:
    for origin, size, root, ext in [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        ("log", -1, ROOT, ()),
        ("log", MAX_TREE_SIZE + 1, ROOT, ()),
        ("log", True, ROOT, ()),
        ("log", 1, ROOT[:31], ()),
        ("log", 1, ROOT, ("",)),
        ("log", 1, ROOT, ("a\nb",)),
    ]:
        with pytest.raises(MalformedNote):
            Checkpoint(origin, size, root, ext)


_LINE = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1, max_size=40)


@given(
    _LINE,
    st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(_LINE, max_size=4).map(tuple),
)
@settings(max_examples=200, deadline=None)
def test_round_trip(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    checkpoint = Checkpoint(origin, size, root, extensions)
    text = format_checkpoint(checkpoint)
    assert parse_checkpoint(text) == checkpoint
    assert format_checkpoint(parse_checkpoint(text)) == text


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_raises_only_malformed_note(text: str) -> None:
    with contextlib.suppress(MalformedNote):
        assert format_checkpoint(parse_checkpoint(text)) == text


_SHAPED = st.lists(
    st.sampled_from(["\n", "log", "0", "1", "01", _B64, "AAAA", " ", "=", "\r", "x"]), max_size=12
).map("".join)


@given(_SHAPED)
@settings(max_examples=300, deadline=None)
def test_checkpoint_shaped_text_raises_only_malformed_note(text: str) -> None:
    with contextlib.suppress(MalformedNote):
        assert format_checkpoint(parse_checkpoint(text)) == text


def test_sign_and_open() -> None:
    skey, vkey = generate_signer_key("example.com/log")
    signer, verifier = Ed25519Signer.from_key(skey), parse_verifier_key(vkey)
    checkpoint = Checkpoint("example.com/log", 42, ROOT, ("note",))
    note = sign_checkpoint(checkpoint, [signer])
    assert note.startswith(checkpoint.text + "\n— example.com/log ")
    opened, signed = open_checkpoint(note, [verifier])
    assert opened == checkpoint
    assert [s.name for s in signed.verified] == ["example.com/log"]
    with pytest.raises(IntegrityError):
        open_checkpoint(note.replace("\n42\n", "\n43\n"), [verifier])
    # A correctly signed note whose text is not a checkpoint.
    with pytest.raises(MalformedNote):
        open_checkpoint(sign_note("just a note\n", [signer]), [verifier])
