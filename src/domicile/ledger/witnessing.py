"""Submitting checkpoints to witnesses (C2SP tlog-witness `add-checkpoint`).

After the log signs a checkpoint it asks each configured witness to cosign it,
proving consistency from the size that witness last cosigned. A witness answering
409 says which size it knows, and the request is made again from there. Each
cosignature is verified with the witness's key before it is kept, and the log then
serves its latest checkpoint with the cosignature lines appended. Clients that do not
know a witness keep its line as an unknown signature, which C2SP signed-note allows.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass

import httpx

from domicile.errors import ConfigError, DomicileError, IntegrityError, LedgerError
from domicile.ledger.checkpoint import parse_checkpoint
from domicile.ledger.cosignature import CosignatureVerifier, parse_cosigner_key, verify_cosignature
from domicile.ledger.log import RegionLog, SignedCheckpoint
from domicile.ledger.note import parse_note

log = logging.getLogger("domicile.ledger")
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True)
class Witness:
    """A witness: where to submit, and the key its cosignatures must verify under."""

    url: str
    verifier: CosignatureVerifier

    @classmethod
    def parse(cls, spec: str) -> Witness:
        """Parse `URL VKEY` (the witness's base URL and its cosignature verifier key)."""
        parts = spec.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
            raise ConfigError(f"witness `{spec[:80]}` must be `URL VERIFIER-KEY`")
        return cls(parts[0].rstrip("/"), parse_cosigner_key(parts[1]))


def _body(log_: RegionLog, old: int, signed: SignedCheckpoint) -> bytes:
    proof = log_.consistency_proof(old, signed.size) if 0 < old < signed.size else []
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n" + signed.note).encode()


def request_cosignature(
    log_: RegionLog, witness: Witness, signed: SignedCheckpoint, old: int, client: httpx.Client
) -> str:
    """Ask one witness to cosign; return its verified cosignature line."""
    for _ in range(2):  # a 409 names the size the witness knows: try once more from there
        try:
            response = client.post(
                f"{witness.url}/add-checkpoint", content=_body(log_, old, signed)
            )
        except httpx.HTTPError as exc:
            raise LedgerError(f"witness `{witness.url}` unreachable: {type(exc).__name__}") from exc
        if response.status_code == 409 and response.text.strip().isdigit():
            old = int(response.text.strip())
            if old > signed.size:
                raise LedgerError(f"witness `{witness.url}` knows a larger tree ({old})")
            continue
        if response.status_code != 200:
            raise LedgerError(f"witness `{witness.url}` answered {response.status_code}")
        return _verified_line(witness, signed, response.text)
    raise LedgerError(f"witness `{witness.url}` kept refusing the old size")


def _verified_line(witness: Witness, signed: SignedCheckpoint, text: str) -> str:
    checkpoint = parse_checkpoint(parse_note(signed.note).text)
    for line in text.splitlines():
        if not line.startswith("\u2014 "):
            continue
        note = parse_note(parse_note(signed.note).text + "\n" + line + "\n")
        for signature in note.signatures:
            if signature.name == witness.verifier.name:
                try:
                    verify_cosignature(checkpoint, signature, witness.verifier)
                except DomicileError:
                    continue
                return line
    raise IntegrityError(f"witness `{witness.url}` sent no valid cosignature")


def witness_latest(log_: RegionLog, witnesses: list[Witness], client: httpx.Client) -> None:
    """Have every witness cosign the log's latest checkpoint (errors are logged, not raised)."""
    signed = log_.latest_checkpoint()
    if signed is None or signed.size == 0:
        return
    for witness in witnesses:
        if log_.has_cosignature(signed.size, witness.verifier.name):
            continue
        try:
            old = log_.last_cosigned_size(witness.verifier.name)
            line = request_cosignature(log_, witness, signed, old, client)
            log_.add_cosignature(signed.size, witness.verifier.name, line)
        except DomicileError as exc:
            log.warning("checkpoint %s of `%s` not cosigned: %s", signed.size, log_.origin, exc)
