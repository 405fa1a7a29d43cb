"""C2SP tlog-witness: `POST /add-checkpoint`, answered with cosignature/v1 lines.

Request body (https://c2sp.org/tlog-witness): ``old <size>\\n``, the consistency proof
from that size as base64 lines, a blank line, then the signed checkpoint note. The
witness answers 200 with its cosignature line(s); 400 for a malformed request; 404 for
a log it does not know; 403 if no known log key signed the checkpoint; 409, with its own
size as ``text/x.tlog.size``, when ``old`` is not the size it last cosigned; 422 when
the proof does not verify. A second root for a size already seen, from anyone, is a
split view and raises an alert carrying both signed checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from domicile.errors import CryptoError, LedgerError, MalformedNote
from domicile.keyfiles import load_or_create
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint
from domicile.ledger.cosignature import Cosigner, generate_cosigner_key
from domicile.ledger.merkle import verify_consistency
from domicile.ledger.note import Ed25519Verifier, decode_base64
from domicile.monitor.alerts import Alert
from domicile.monitor.follow import split_view_alert
from domicile.monitor.state import MonitorState

KEY_FILE = "witness.key"
SIZE_TYPE = "text/x.tlog.size"
MAX_PROOF_LINES = 63


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, content type, body."""

    status: int
    content_type: str
    body: bytes


def load_or_create_cosigner(data_dir: Path, name: str) -> Cosigner:
    """The witness key in `data_dir/witness.key` (mode 0600), made on first use."""

    def make() -> bytes:
        return (generate_cosigner_key(name)[0] + "\n").encode()

    text = load_or_create(data_dir / KEY_FILE, make)
    return Cosigner.from_key(text.decode().strip())


def parse_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    """Split an add-checkpoint body into (old size, proof hashes, checkpoint note)."""
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise MalformedNote("add-checkpoint body has no blank line before the checkpoint")
    lines = head.decode("ascii", "replace").split("\n")
    first = lines[0]
    if not first.startswith("old ") or not first[4:].isdigit() or first[4:] != str(int(first[4:])):
        raise MalformedNote("add-checkpoint body must start with `old <size>`")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise MalformedNote("add-checkpoint proof is too long")
    return int(first[4:]), [decode_base64(line) for line in lines[1:]], note


class Witness:
    """Verifies and cosigns checkpoints of the logs it knows."""

    def __init__(
        self,
        state: MonitorState,
        cosigner: Cosigner,
        verifiers: Mapping[str, Ed25519Verifier],
        emit: Callable[[Sequence[Alert]], int],
    ) -> None:
        """Cosign with `cosigner` checkpoints signed by one of `verifiers` (by origin)."""
        self.state = state
        self.cosigner = cosigner
        self.verifiers = verifiers
        self.emit = emit

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle one `POST /add-checkpoint` body."""
        try:
            old, proof, note = parse_request(body)
            origin = note.split(b"\n", 1)[0].decode("utf-8")
        except (MalformedNote, UnicodeDecodeError) as exc:
            return _text(400, f"{exc}")
        verifier = self.verifiers.get(origin)
        if verifier is None:
            return _text(404, "unknown log")
        try:
            checkpoint, _ = open_checkpoint(note, [verifier])
        except (CryptoError, LedgerError):
            return _text(403, "checkpoint is not signed by the log's key")
        if old > checkpoint.size:
            return _text(400, "old size is larger than the checkpoint size")
        text = note.decode("utf-8")
        self.emit(
            [
                split_view_alert(origin, checkpoint, text, seen)
                for seen in self.state.add_checkpoint(
                    origin, checkpoint.size, checkpoint.root_hash, text, "witness"
                )
            ]
        )
        return self._advance(origin, old, proof, checkpoint, text)

    def _advance(
        self, origin: str, old: int, proof: list[bytes], checkpoint: Checkpoint, text: str
    ) -> Answer:
        known = self.state.witnessed(origin)
        known_size, known_root, known_note = known if known else (0, b"", "")
        if old != known_size:
            return Answer(409, SIZE_TYPE, f"{known_size}\n".encode())
        if old > 0:
            try:
                verify_consistency(old, checkpoint.size, proof, known_root, checkpoint.root_hash)
            except LedgerError as exc:
                self.emit([_fork(origin, old, known_note, checkpoint, text, str(exc))])
                return _text(422, "consistency proof does not verify")
        if not self.state.set_witnessed(origin, checkpoint.size, checkpoint.root_hash, text, old):
            current = self.state.witnessed(origin)
            return Answer(409, SIZE_TYPE, f"{current[0] if current else 0}\n".encode())
        signature = self.cosigner.cosign(checkpoint, int(time.time()))
        return Answer(200, "text/plain; charset=utf-8", signature.line.encode())


def _fork(
    origin: str, old: int, old_note: str, checkpoint: Checkpoint, text: str, why: str
) -> Alert:
    return Alert(
        "log-forked",
        origin,
        f"checkpoint {checkpoint.size} sent to the witness does not extend {old}: {why}",
        key=f"witness|{old}|{checkpoint.size}|{checkpoint.root_hash.hex()}",
        evidence={"checkpoints": [old_note, text]},
    )


def _text(status: int, message: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (message + "\n").encode())
