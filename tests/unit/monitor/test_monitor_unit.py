"""The monitor's import boundary and its C2SP tlog-witness endpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from domicile.ledger.checkpoint import Checkpoint, sign_checkpoint
from domicile.ledger.merkle import (
    consistency_proof,
    leaf_hash,
    node_reader_from_leaves,
    root_from_leaves,
)
from domicile.ledger.note import Ed25519Signer, generate_signer_key
from domicile.monitor.alerts import Alert
from domicile.monitor.state import MonitorState
from domicile.monitor.witness import Witness, load_or_create_cosigner

FORBIDDEN = (
    "domicile.gateway", "domicile.api", "domicile.vault", "domicile.runtime", "domicile.keys",
    "domicile.storage", "domicile.settings", "domicile.principals", "domicile.grants", "fastapi",
)  # fmt: skip


def test_monitor_imports_no_gateway_code() -> None:
    code = (
        "import sys, domicile.monitor.service, domicile.monitor.server, domicile.cli_monitor;"
        f"bad = [m for m in sys.modules if m.startswith({FORBIDDEN!r})];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _log(n: int) -> tuple[Ed25519Signer, list[bytes]]:
    signer = Ed25519Signer.from_key(generate_signer_key("example.org/log/eu-ie")[0])
    return signer, [leaf_hash(b"entry %d" % i) for i in range(n)]


def _note(
    signer: Ed25519Signer, leaves: list[bytes], size: int, root: bytes | None = None
) -> bytes:
    cp = Checkpoint(signer.name, size, root or root_from_leaves(leaves[:size]))
    return sign_checkpoint(cp, [signer]).encode()


def _body(old: int, proof: list[bytes], note: bytes) -> bytes:
    import base64

    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n").encode() + note


def test_witness_protocol(tmp_path: Path) -> None:
    signer, leaves = _log(20)
    state = MonitorState(tmp_path / "m.db")
    raised: list[Alert] = []

    def emit(alerts: object) -> int:
        raised.extend(alerts)  # type: ignore[arg-type]
        return 0

    witness = Witness(state, load_or_create_cosigner(tmp_path, "w.example/w"),
                      {signer.name: signer.verifier()}, emit)  # fmt: skip
    first = witness.add_checkpoint(_body(0, [], _note(signer, leaves, 8)))
    assert first.status == 200
    assert first.body.startswith("— w.example/w ".encode())
    stale = witness.add_checkpoint(_body(0, [], _note(signer, leaves, 12)))
    assert (stale.status, stale.content_type, stale.body) == (409, "text/x.tlog.size", b"8\n")
    proof = consistency_proof(8, 12, node_reader_from_leaves(leaves))
    assert witness.add_checkpoint(_body(8, proof, _note(signer, leaves, 12))).status == 200
    bad_proof = witness.add_checkpoint(_body(12, proof, _note(signer, leaves, 16)))
    assert bad_proof.status == 422
    other = Ed25519Signer.from_key(generate_signer_key(signer.name)[0])
    assert witness.add_checkpoint(_body(12, [], _note(other, leaves, 12))).status == 403
    stranger = Ed25519Signer.from_key(generate_signer_key("nobody.example/log")[0])
    assert witness.add_checkpoint(_body(0, [], _note(stranger, leaves, 3))).status == 404
    assert witness.add_checkpoint(b"nonsense").status == 400
    fork = witness.add_checkpoint(_body(12, [], _note(signer, leaves, 12, bytes(32))))
    assert fork.status != 200
    assert "split-view" in {a.kind for a in raised}
