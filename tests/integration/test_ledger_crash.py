"""SIGKILL the log writer at random points, restart, and check nothing acknowledged is lost
and no two inconsistent checkpoints were ever signed."""

from __future__ import annotations

import hashlib
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from domicile.ledger.fsck import verify_log
from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.log import RegionLog
from domicile.ledger.merkle import verify_consistency
from domicile.storage.database import SqliteDatabase, open_database
from domicile.storage.url import SqliteUrl, parse_storage_url

WRITER = Path(__file__).with_name("ledger_writer.py")
ORIGIN = "crash.example/log/eu-ie"
TRIALS = 20
PG_TRIALS = 8
_ACK = re.compile(r"(\d+) ([0-9a-f]{64})")


def _acks(path: Path) -> dict[int, str]:
    out: dict[int, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        # The kill can cut a writer's last write() short (Linux ends a write to a file at
        # a page boundary for a fatal signal): such a torn line is no record of an ack.
        # Each writer starts on a new line, so a torn one never runs into the next.
        ack = _ACK.fullmatch(line)
        if ack is None:
            continue
        index, digest = int(ack[1]), ack[2]
        assert out.setdefault(index, digest) == digest, f"index {index} acked twice"
    return out


def _check_survivors(
    log: RegionLog, acked: dict[int, str], seen_roots: dict[int, bytes], rng: random.Random
) -> None:
    """Every acknowledged entry is stored as acknowledged, the log verifies, no size ever
    had two roots, no signed checkpoint vanished, and old checkpoints are consistent with
    a new one."""
    assert max(acked, default=-1) < log.size
    stored = [
        hashlib.sha256(e).hexdigest() for b in range((log.size + 255) // 256) for e in log.bundle(b)
    ]
    for index, digest in acked.items():
        assert stored[index] == digest, index
    verify_log(log)  # every entry re-hashed; every stored checkpoint recomputed
    checkpoints = log.checkpoints()
    for cp in checkpoints:
        assert seen_roots.setdefault(cp.size, cp.root) == cp.root, "two roots for one size"
    assert set(seen_roots) <= {cp.size for cp in checkpoints}, "a signed checkpoint vanished"
    newest = log.sign_checkpoint()
    for cp in rng.sample(checkpoints, min(len(checkpoints), 40)):
        if 0 < cp.size < newest.size:
            proof = log.consistency_proof(cp.size, newest.size)
            verify_consistency(cp.size, newest.size, proof, cp.root, newest.root)
    seen_roots[newest.size] = newest.root


def _start_writer(store: str, key: Path, acks: Path, trial: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), store, str(key), str(acks), trial],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
    except BaseException:
        _kill(proc)  # a writer that never got ready must not outlive the test
        raise
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.stdout is not None
    proc.stdout.close()


def test_sigkill_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    db, key, acks = tmp_path / "ledger.db", tmp_path / "log.key", tmp_path / "acks"
    rng = random.Random(2026)
    seen_roots: dict[int, bytes] = {}
    for trial in range(TRIALS):
        proc = _start_writer(str(db), key, acks, str(trial))
        time.sleep(rng.uniform(0.02, 0.5))
        _kill(proc)
        log = RegionLog(ORIGIN, SqliteDatabase(SqliteUrl(db)), load_or_create_signer(key, ORIGIN))
        _check_survivors(log, _acks(acks), seen_roots, rng)
        log.db.close()
    assert len(_acks(acks)) > 1000  # the writer did real work between kills


@pytest.mark.postgres
def test_two_writers_on_postgresql_killed_at_random_lose_nothing(
    tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    """Two processes append to one PostgreSQL log at once (two gateways of a region), and
    each is SIGKILLed at its own random moment: every entry either acknowledged is
    stored once, at the index it was given to one of them, and the log stays one tree."""
    store, key = f"{pg_dsn}?schema={pg_prefix}", tmp_path / "log.key"
    signer = load_or_create_signer(key, ORIGIN)  # before the writers: both sign with it
    acks = [tmp_path / "acks-0", tmp_path / "acks-1"]
    rng = random.Random(2027)
    seen_roots: dict[int, bytes] = {}
    for trial in range(PG_TRIALS):
        procs: list[subprocess.Popen[str]] = []
        try:
            for n in range(2):
                procs.append(_start_writer(store, key, acks[n], f"{trial}p{n}"))
            for proc in rng.sample(procs, 2):
                time.sleep(rng.uniform(0.05, 0.6))
                _kill(proc)
        finally:
            for proc in procs:  # the other writer, when one failed to start
                if proc.returncode is None:
                    _kill(proc)
        first, second = _acks(acks[0]), _acks(acks[1])
        both = sorted(first.keys() & second.keys())
        assert not both, f"indices given to both writers: {both[:5]}"
        log = RegionLog(ORIGIN, open_database(parse_storage_url(store)), signer)
        _check_survivors(log, first | second, seen_roots, rng)
        log.db.close()
    assert min(len(_acks(a)) for a in acks) > 500  # both wrote, between the kills
