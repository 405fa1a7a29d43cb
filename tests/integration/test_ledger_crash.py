"""SIGKILL the log writer at random points, restart, and check nothing acknowledged is lost
and no two inconsistent checkpoints were ever signed."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from domicile.ledger.fsck import verify_log
from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.log import RegionLog
from domicile.ledger.merkle import verify_consistency
from domicile.storage.database import SqliteDatabase
from domicile.storage.url import SqliteUrl

WRITER = Path(__file__).with_name("ledger_writer.py")
ORIGIN = "crash.example/log/eu-ie"
TRIALS = 20


def _acks(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        index, digest = line.split()
        assert out.setdefault(int(index), digest) == digest, f"index {index} acked twice"
    return out


def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    db, key, acks = tmp_path / "ledger.db", tmp_path / "log.key", tmp_path / "acks"
    rng = random.Random(2026)
    seen_roots: dict[int, bytes] = {}
    for trial in range(TRIALS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(key), str(acks), str(trial)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

        log = RegionLog(ORIGIN, SqliteDatabase(SqliteUrl(db)), load_or_create_signer(key, ORIGIN))
        acked = _acks(acks)
        assert max(acked, default=-1) < log.size
        stored = [
            hashlib.sha256(e).hexdigest()
            for b in range((log.size + 255) // 256)
            for e in log.bundle(b)
        ]
        for index, digest in acked.items():
            assert stored[index] == digest, index
        verify_log(log)  # every entry re-hashed; every stored checkpoint recomputed
        checkpoints = log.checkpoints()
        for cp in checkpoints:
            assert seen_roots.setdefault(cp.size, cp.root) == cp.root, "two roots for one size"
        assert set(seen_roots) <= {cp.size for cp in checkpoints}, "a signed checkpoint vanished"
        newest = log.sign_checkpoint()
        sample = rng.sample(checkpoints, min(len(checkpoints), 40))
        for cp in sample:
            if 0 < cp.size < newest.size:
                verify_consistency(
                    cp.size,
                    newest.size,
                    log.consistency_proof(cp.size, newest.size),
                    cp.root,
                    newest.root,
                )
        seen_roots[newest.size] = newest.root
        log.db.close()
    assert len(_acks(acks)) > 1000  # the writer did real work between kills
