"""Ledger figures: durable appends, proofs served and verified, and pymerkle, in one run.

Everything is measured in process: the figures are library calls (RegionLog, Sequencer,
merkle.verify_*), not HTTP requests. Every figure is a median over rounds, and the
cases of a section take turns (A B C, then C B A, …) so that the machine's drift hits
them all. Nothing is asserted: a timing is a figure, not a test (DESIGN.md).

1. append   Durable append throughput of 200-byte entries: RegionLog.append with one
            transaction (and one fsync) per batch, on SQLite (WAL, synchronous=FULL)
            and PostgreSQL; and the Sequencer with N threads each appending single
            entries (the gateway's load) on SQLite. Baseline in the same run: hashlib's
            raw SHA-256 rate over 200-byte inputs, the ceiling of any Python log.
2. proofs   Logs of 1M and 10M entries built with large batches (build time reported);
            inclusion proofs of random indices and consistency proofs from random old
            sizes to the full size, per second, cold (a new RegionLog on the existing
            file: empty tile cache; the OS page cache is not dropped) and warm; and
            verifications per second (merkle.verify_inclusion / verify_consistency);
            then section 1's durable appends again, into the log of that size.
3. pymerkle The same appends and proofs through pymerkle, the Python peer, if it is
            installed (it is not a dependency: `.venv/bin/pip install pymerkle`):
            its InmemoryTree and its SqliteTree, at capped sizes.

PostgreSQL comes from $DOMICILE_BENCH_PG_DSN (default
postgresql://postgres@127.0.0.1:5432/test); its schemas are dropped afterwards.

    .venv/bin/python bench/ledger.py [--quick] [--sizes 1000000,10000000] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

import psycopg

from benchlib import (
    DEFAULT_PG_DSN,
    PG_DSN_ENV,
    clean_domicile_env,
    fmt,
    log,
    machine_info,
    median,
    ratio,
    table,
    workdir,
)
from domicile.errors import ProofError
from domicile.ledger import merkle
from domicile.ledger.log import RegionLog
from domicile.ledger.note import Ed25519Signer, generate_signer_key
from domicile.ledger.sequencer import Sequencer
from domicile.ledger.tiles import TILE_WIDTH
from domicile.storage.database import SqliteDatabase
from domicile.storage.postgres import PostgresDatabase, drop_schema
from domicile.storage.url import PostgresUrl, SqliteUrl

ENTRY_SIZE = 200
ORIGIN = "bench.domicile.example/ledger"
APPEND_TARGET = 100_000  # entries/s on SQLite (issue 3)
PROOF_TARGET = 20_000  # proofs/s at 10M entries (issue 3)
PROOF_TARGET_SIZE = 10_000_000
SECTIONS = ("append", "proofs", "pymerkle")

QUICK = {
    "sizes": "100000,1000000",
    "append_entries": 30_000,
    "seq_seconds": 1.0,
    "threads": "1,16",
    "proofs": 2000,
    "warmup": 5000,
    "pymerkle_sizes": "100000",
    "pymerkle_proofs": 500,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="a 1-2 minute run: sizes 100k/1M, short rounds")
    add("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    add("--rounds", type=int, default=3, help="rounds per case (median reported)")
    add("--backends", default="sqlite,postgres", help="append backends: sqlite, postgres")
    add("--batches", default="1000,10000", help="entries per RegionLog.append (transaction)")
    add("--append-entries", type=int, default=100_000, help="entries per append round")
    add("--threads", default="1,8,64", help="Sequencer cases: concurrent appending threads")
    add("--seq-seconds", type=float, default=3.0, help="length of one Sequencer round (s)")
    add("--sha-inputs", type=int, default=200_000, help="200-byte inputs per SHA-256 round")
    add("--sizes", default="1000000,10000000", help="log sizes for the proof section")
    add("--build-batch", type=int, default=50_000, help="entries per append when building")
    add("--proofs", type=int, default=5000, help="proofs per round (and per cold pass)")
    add("--warmup", type=int, default=20_000, help="proofs of each kind before warm rounds")
    add("--pymerkle-sizes", default="100000,1000000", help="tree sizes for pymerkle (capped)")
    add("--pymerkle-proofs", type=int, default=1000, help="pymerkle proofs per round")
    add("--seed", type=int, default=9162, help="seed of the entries and random indices")
    add("--json", action="store_true", help="print JSON instead of tables")
    add("--keep", action="store_true", help="keep the temporary directory")
    add("--dir", type=Path, default=None, help="where to make the temporary directory")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):  # an explicit flag still wins
                setattr(args, name, value)
    args.sections = _names(args.sections, SECTIONS, "section")
    args.backends = _names(args.backends, ("sqlite", "postgres"), "backend")
    for name in ("batches", "threads", "sizes", "pymerkle_sizes"):
        setattr(args, name, _ints(getattr(args, name), name))
    return args


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise SystemExit(f"error: unknown {what}(s) {unknown}; choose from {list(allowed)}")
    return names


def _ints(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(v.replace("_", "")) for v in text.split(",") if v.strip()})
    except ValueError:
        raise SystemExit(
            f"error: --{what.replace('_', '-')} takes integers, got `{text}`"
        ) from None
    if not values or values[0] <= 0:
        raise SystemExit(f"error: --{what.replace('_', '-')} takes positive integers")
    return values


# -- shared ---------------------------------------------------------------------------------


class Entries:
    """Deterministic 200-byte entries: a seeded pad and the big-endian index."""

    def __init__(self, seed: int) -> None:
        self.pad = random.Random(seed).randbytes(ENTRY_SIZE - 8)

    def entry(self, index: int) -> bytes:
        return self.pad + index.to_bytes(8, "big")

    def batch(self, start: int, count: int) -> list[bytes]:
        pad = self.pad
        return [pad + i.to_bytes(8, "big") for i in range(start, start + count)]


@dataclass
class Bench:
    """What every section needs."""

    args: argparse.Namespace
    work: Path
    entries: Entries
    signer: Ed25519Signer
    pg_dsn: str
    problems: list[str] = field(default_factory=list)
    proof_db: Path | None = None  # the proof section's log, reused for pymerkle cross-checks
    proof_db_size: int = 0

    def sqlite_log(self, path: Path) -> RegionLog:
        return RegionLog(ORIGIN, SqliteDatabase(SqliteUrl(path)), self.signer)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rate_of(count: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Run fn once; return (count per second, seconds)."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return ratio(count, seconds), seconds


def sha256_rate(inputs: Sequence[bytes]) -> float:
    """The ceiling: hashlib.sha256(x).digest() over 200-byte inputs, in a Python loop."""
    sha = hashlib.sha256

    def run() -> None:
        for data in inputs:
            sha(data).digest()

    return rate_of(len(inputs), run)[0]


def alternating(cases: Sequence[Any], round_no: int) -> list[Any]:
    return list(cases) if round_no % 2 == 0 else list(reversed(cases))


def pg_status(dsn: str) -> tuple[str | None, dict[str, str]]:
    """(why PostgreSQL is unusable or None, its durability settings)."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            settings = {
                name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
            }
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0], {}
    return None, settings


def sqlite_pragmas(region_log: RegionLog) -> dict[str, str]:
    with region_log.db.transaction(write=False) as tx:
        mode = tx.execute("PRAGMA journal_mode").fetchone()[0]
        sync = tx.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "journal_mode": str(mode),
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, str(sync)),
    }


@contextmanager
def pg_log(bench: Bench, label: str) -> Iterator[RegionLog]:
    url = PostgresUrl(bench.pg_dsn, f"bench{uuid.uuid4().hex[:8]}_{label}")
    db = PostgresDatabase(url, max_size=4)
    try:
        yield RegionLog(ORIGIN, db, bench.signer)
    finally:
        db.close()
        drop_schema(url)


# -- 1. durable appends ---------------------------------------------------------------------


@dataclass
class AppendCase:
    """One way of appending, with its own log, and what each round measured."""

    name: str
    backend: str
    log: RegionLog
    batch: int = 0  # entries per RegionLog.append; 0 for a Sequencer case
    threads: int = 0
    rounds: list[dict[str, float]] = field(default_factory=list)

    def run(self, bench: Bench) -> dict[str, float]:
        args = bench.args
        if self.threads:
            return run_sequencer(self.log, bench.entries, self.threads, args.seq_seconds)
        total = max(1, round(args.append_entries / self.batch)) * self.batch
        return run_batches(self.log, bench.entries, total, self.batch)


def run_batches(
    region_log: RegionLog, entries: Entries, total: int, batch: int
) -> dict[str, float]:
    start = region_log.size
    batches = [entries.batch(start + k, batch) for k in range(0, total, batch)]
    commit_s: list[float] = []
    t0 = time.perf_counter()
    for chunk in batches:
        t = time.perf_counter()
        region_log.append(chunk)
        commit_s.append(time.perf_counter() - t)
    seconds = time.perf_counter() - t0
    return {
        "entries": total,
        "seconds": seconds,
        "per_s": total / seconds,
        "commits": len(batches),
        "commit_p50_ms": percentile(commit_s, 0.5) * 1000,
        "commit_p99_ms": percentile(commit_s, 0.99) * 1000,
    }


class _CountingLog:
    """What the Sequencer needs of a RegionLog (append, size), counting the commits."""

    def __init__(self, region_log: RegionLog) -> None:
        self._log = region_log
        self.commits = 0

    @property
    def size(self) -> int:
        return self._log.size

    def append(self, entries: Sequence[bytes]) -> int:
        self.commits += 1
        return self._log.append(entries)


def run_sequencer(
    region_log: RegionLog, entries: Entries, threads: int, seconds: float
) -> dict[str, float]:
    counting = _CountingLog(region_log)
    sequencer = Sequencer(cast(RegionLog, counting))
    start_barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    base = region_log.size

    def worker(tid: int) -> None:
        mine, k = latencies[tid], 0
        first = base + tid * 1_000_000_000
        start_barrier.wait()
        try:
            while not stop.is_set():
                entry = entries.entry(first + k)
                t = time.perf_counter()
                sequencer.append([entry])
                mine.append(time.perf_counter() - t)
                k += 1
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    start_barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    acked = [x for lat in latencies for x in lat]
    return {
        "entries": len(acked),
        "seconds": elapsed,
        "per_s": len(acked) / elapsed,
        "commits": counting.commits,
        "mean_batch": ratio(len(acked), counting.commits),
        "ack_p50_ms": percentile(acked, 0.5) * 1000,
        "ack_p99_ms": percentile(acked, 0.99) * 1000,
    }


def section_append(bench: Bench) -> dict[str, Any]:
    args = bench.args
    result: dict[str, Any] = {"skipped": {}, "durability": {}}
    with _append_cases(bench, result) as cases:
        sha_inputs = bench.entries.batch(0, args.sha_inputs)
        sha_rounds: list[float] = []
        for r in range(args.rounds):
            sha_rounds.append(sha256_rate(sha_inputs))
            log(f"append round {r + 1}/{args.rounds}: sha256 {fmt(sha_rounds[-1])}/s")
            for case in alternating(cases, r):
                case.rounds.append(case.run(bench))
                log(f"  {case.name}: {fmt(case.rounds[-1]['per_s'])} entries/s")
        sha = median(sha_rounds)
        result["sha256_per_s"] = sha
        result["sha256_rounds"] = sha_rounds
        result["cases"] = [_append_summary(case, sha) for case in cases]
    return result


def _append_summary(case: AppendCase, sha: float) -> dict[str, Any]:
    keys = case.rounds[0].keys()
    summary: dict[str, Any] = {
        "name": case.name,
        "backend": case.backend,
        "batch": case.batch or None,
        "threads": case.threads or None,
        **{k: median([r[k] for r in case.rounds]) for k in keys if k != "entries"},
        "rounds_per_s": [r["per_s"] for r in case.rounds],
    }
    summary["ratio_to_sha256"] = ratio(summary["per_s"], sha)
    if case.backend == "sqlite":
        summary["ratio_to_target"] = ratio(summary["per_s"], APPEND_TARGET)
    return summary


@contextmanager
def _append_cases(bench: Bench, result: dict[str, Any]) -> Iterator[list[AppendCase]]:
    args = bench.args
    cases: list[AppendCase] = []
    with ExitStack() as stack:
        if "sqlite" in args.backends:
            for batch in args.batches:
                region_log = bench.sqlite_log(bench.work / f"append-b{batch}.db")
                stack.callback(region_log.db.close)
                name = f"sqlite   RegionLog.append x{batch:,}"
                cases.append(AppendCase(name, "sqlite", region_log, batch))
            for threads in args.threads:
                region_log = bench.sqlite_log(bench.work / f"append-t{threads}.db")
                stack.callback(region_log.db.close)
                name = f"sqlite   Sequencer, {threads} thread(s) x 1 entry"
                cases.append(AppendCase(name, "sqlite", region_log, threads=threads))
            result["durability"]["sqlite"] = sqlite_pragmas(cases[0].log)
        if "postgres" in args.backends:
            why, settings = pg_status(bench.pg_dsn)
            if why is not None:
                result["skipped"]["postgres"] = f"postgresql at ${PG_DSN_ENV} unreachable: {why}"
                log(f"skipping postgres: {why}")
            else:
                result["durability"]["postgres"] = settings
                for batch in args.batches:
                    region_log = stack.enter_context(pg_log(bench, f"append_b{batch}"))
                    name = f"postgres RegionLog.append x{batch:,}"
                    cases.append(AppendCase(name, "postgres", region_log, batch))
        yield cases


# -- 2. proofs served and verified ----------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def build_to(region_log: RegionLog, entries: Entries, size: int, batch: int) -> dict[str, float]:
    """Append to `size` entries in batches; only the appends are timed."""
    start, append_s, reported = region_log.size, 0.0, region_log.size
    t0 = time.perf_counter()
    while region_log.size < size:
        chunk = entries.batch(region_log.size, min(batch, size - region_log.size))
        _, seconds = timed(partial(region_log.append, chunk))
        append_s += seconds
        if region_log.size - reported >= 1_000_000 or region_log.size == size:
            reported = region_log.size
            log(f"  built {region_log.size:,} ({fmt(ratio(reported - start, append_s))}/s)")
    added = size - start
    return {
        "from": start,
        "entries": added,
        "seconds": time.perf_counter() - t0,
        "append_seconds": append_s,
        "per_s": ratio(added, append_s),
    }


def _db_mb(path: Path) -> float:
    files = [path, path.with_name(path.name + "-wal")]
    return sum(p.stat().st_size for p in files if p.exists()) / 1e6


def section_proofs(bench: Bench) -> dict[str, Any]:
    args = bench.args
    path = bench.work / "proofs.db"
    builder = bench.sqlite_log(path)
    results: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            log(f"proofs: building the log to {size:,} entries, {args.build_batch:,} per append")
            build = build_to(builder, bench.entries, size, args.build_batch)
            _, sign_s = timed(builder.sign_checkpoint)
            build.update(sign_ms=sign_s * 1000, db_mb=_db_mb(path))
            log(f"proofs: measuring at {size:,}")
            res = {"size": size, "build": build, **measure_proofs(bench, path, size)}
            bench.proof_db, bench.proof_db_size = path, size
            res["append_at_size"] = append_at_size(bench, builder)
            results.append(res)
    finally:
        builder.db.close()
    cache = inspect.signature(RegionLog.__init__).parameters["tile_cache"].default
    return {"tile_cache": cache, "sizes": results}


def append_at_size(bench: Bench, region_log: RegionLog) -> dict[str, Any]:
    """Section 1's durable appends again, into this large log (after its proofs were taken)."""
    args = bench.args
    rounds: dict[int, list[float]] = {b: [] for b in args.batches}
    for r in range(args.rounds):
        for batch in alternating(args.batches, r):
            total = max(1, round(args.append_entries / batch)) * batch
            rounds[batch].append(run_batches(region_log, bench.entries, total, batch)["per_s"])
    log(
        f"  appends at {region_log.size:,}: "
        + ", ".join(f"x{b:,} {fmt(median(v))}/s" for b, v in rounds.items())
    )
    return {str(b): {"per_s": median(v), "rounds_per_s": v} for b, v in rounds.items()}


def measure_proofs(bench: Bench, path: Path, size: int) -> dict[str, Any]:
    args = bench.args
    rng = random.Random(f"{args.seed}-{size}")
    count = args.proofs

    def indices(n: int = count) -> list[int]:
        return [rng.randrange(size) for _ in range(n)]

    def old_sizes(n: int = count) -> list[int]:
        return [rng.randrange(1, size) if size > 1 else 1 for _ in range(n)]

    def inclusions(lg: RegionLog, xs: list[int]) -> list[list[bytes]]:
        return [lg.inclusion_proof(i, size) for i in xs]

    def consistencies(lg: RegionLog, xs: list[int]) -> list[list[bytes]]:
        return [lg.consistency_proof(m, size) for m in xs]

    kinds = {"inclusion": (indices, inclusions), "consistency": (old_sizes, consistencies)}
    out: dict[str, Any] = {k: {"warm_rounds": [], "verify_rounds": []} for k in kinds}
    for kind, (make, prove) in kinds.items():  # cold: a new RegionLog per kind
        xs = make()
        region_log, open_s = timed(partial(bench.sqlite_log, path))
        try:
            _, seconds = timed(partial(prove, region_log, xs))
        finally:
            region_log.db.close()
        out[kind].update(cold_per_s=count / seconds, open_ms=open_s * 1000)
    region_log = bench.sqlite_log(path)
    try:
        for make, prove in kinds.values():
            prove(region_log, make(args.warmup))
        root = region_log.root()
        for r in range(args.rounds):
            for kind in alternating(list(kinds), r):
                make, prove = kinds[kind]
                xs = make()
                proofs, seconds = timed(partial(prove, region_log, xs))
                out[kind]["warm_rounds"].append(count / seconds)
                out[kind]["hashes"] = statistics.mean(len(p) for p in proofs)
                verify = _verifier(bench, region_log, kind, size, root, xs, proofs)
                out[kind]["verify_rounds"].append(count / timed(verify)[1])
    finally:
        region_log.db.close()
    for kind in kinds:
        out[kind]["warm_per_s"] = median(out[kind]["warm_rounds"])
        out[kind]["verify_per_s"] = median(out[kind]["verify_rounds"])
    return out


def _verifier(
    bench: Bench,
    region_log: RegionLog,
    kind: str,
    size: int,
    root: bytes,
    xs: list[int],
    proofs: list[list[bytes]],
) -> Callable[[], None]:
    """The timed verification of one round's proofs (inputs prepared outside the timing)."""
    if kind == "inclusion":
        leaves = [merkle.leaf_hash(bench.entries.entry(i)) for i in xs]
        work_i = list(zip(leaves, xs, proofs, strict=True))
        verify_inclusion = merkle.verify_inclusion

        def run_inclusion() -> None:
            for leaf, index, proof in work_i:
                verify_inclusion(leaf, index, size, proof, root)

        return _checked(bench, f"inclusion proofs at {size:,}", run_inclusion)
    roots = [region_log.root(m) for m in xs]
    work_c = list(zip(xs, proofs, roots, strict=True))
    verify_consistency = merkle.verify_consistency

    def run_consistency() -> None:
        for old, proof, old_root in work_c:
            verify_consistency(old, size, proof, old_root, root)

    return _checked(bench, f"consistency proofs to {size:,}", run_consistency)


def _checked(bench: Bench, what: str, fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except ProofError as exc:
            bench.problems.append(f"{what} failed verification: {exc}")

    return run


# -- 3. pymerkle ----------------------------------------------------------------------------


def section_pymerkle(bench: Bench) -> dict[str, Any]:
    try:
        import pymerkle  # type: ignore[import-untyped]  # optional (GPL, not a dependency)
    except ImportError:
        return {"skipped": "pymerkle is not installed (.venv/bin/pip install pymerkle)"}
    result: dict[str, Any] = {"version": getattr(pymerkle, "__version__", "?")}
    result["append"] = _pm_append(bench, pymerkle)
    result["trees"] = [_pm_tree(bench, pymerkle, kind) for kind in ("InmemoryTree", "SqliteTree")]
    return result


def _pm_append(bench: Bench, pymerkle: Any) -> dict[str, Any]:
    """Durable appends through SqliteTree.append_entries (one transaction per call)."""
    args = bench.args
    trees = {b: pymerkle.SqliteTree(str(bench.work / f"pm-append-b{b}.db")) for b in args.batches}
    mem = pymerkle.InmemoryTree()
    rounds: dict[str, list[float]] = {f"sqlite x{b}": [] for b in args.batches}
    rounds["memory"] = []
    first = trees[args.batches[0]]
    durability = {
        "journal_mode": str(first.con.execute("PRAGMA journal_mode").fetchone()),
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            first.con.execute("PRAGMA synchronous").fetchone(), "?"
        ),
    }
    try:
        cases = [*args.batches, 0]
        for r in range(args.rounds):
            for batch in alternating(cases, r):
                tree = trees[batch] if batch else mem
                step = batch or args.batches[-1]
                total = max(1, round(args.append_entries / step)) * step
                start = tree.get_size()
                chunks = [bench.entries.batch(start + k, step) for k in range(0, total, step)]
                _, seconds = timed(partial(_append_all, tree, chunks))
                rounds[f"sqlite x{batch}" if batch else "memory"].append(total / seconds)
            log(f"pymerkle append round {r + 1}/{args.rounds} done")
    finally:
        for tree in trees.values():
            tree.close()
    return {
        "durability": durability,
        "per_s": {k: median(v) for k, v in rounds.items()},
        "rounds_per_s": rounds,
    }


def _pm_tree(bench: Bench, pymerkle: Any, kind: str) -> dict[str, Any]:
    args = bench.args
    path = bench.work / "pm-proofs.db"
    tree = pymerkle.InmemoryTree() if kind == "InmemoryTree" else pymerkle.SqliteTree(str(path))
    results = []
    try:
        for size in args.pymerkle_sizes:
            log(f"pymerkle {kind}: building to {size:,}")
            build = _pm_build(tree, bench.entries, size, args.build_batch)
            log(f"pymerkle {kind}: measuring at {size:,}")
            reopen = None if kind == "InmemoryTree" else (lambda: pymerkle.SqliteTree(str(path)))
            res = _pm_measure(bench, pymerkle, tree, reopen, size)
            res["root_matches_domicile"] = _pm_cross_check(bench, tree, size)
            results.append({"size": size, "build": build, **res})
    finally:
        if kind == "SqliteTree":
            tree.close()
    del tree
    return {"tree": kind, "sizes": results}


def _append_all(tree: Any, chunks: list[list[bytes]]) -> None:
    for chunk in chunks:
        tree.append_entries(chunk)


def _pm_build(tree: Any, entries: Entries, size: int, batch: int) -> dict[str, float]:
    start = tree.get_size()
    append_s = 0.0
    while (have := tree.get_size()) < size:
        chunk = entries.batch(have, min(batch, size - have))
        append_s += timed(partial(tree.append_entries, chunk))[1]
    return {
        "from": start,
        "entries": size - start,
        "per_s": ratio(size - start, append_s),
        "append_seconds": append_s,
    }


def _pm_measure(
    bench: Bench, pymerkle: Any, tree: Any, reopen: Callable[[], Any] | None, size: int
) -> dict[str, Any]:
    """Cold (a new SqliteTree on the file: empty subroot cache), warm, and verification."""
    args = bench.args
    rng = random.Random(f"pymerkle-{args.seed}-{size}")
    count = args.pymerkle_proofs

    def make(kind: str, n: int = count) -> list[int]:
        if kind == "inclusion":
            return [rng.randrange(size) + 1 for _ in range(n)]  # pymerkle counts from one
        return [rng.randrange(1, size) if size > 1 else 1 for _ in range(n)]

    def prove(t: Any, kind: str, xs: list[int]) -> list[Any]:
        if kind == "inclusion":
            return [t.prove_inclusion(i, size) for i in xs]
        return [t.prove_consistency(m, size) for m in xs]

    kinds = ("inclusion", "consistency")
    out: dict[str, Any] = {k: {"warm_rounds": [], "verify_rounds": []} for k in kinds}
    for kind in kinds:
        xs = make(kind)
        cold = reopen() if reopen is not None else tree
        try:
            out[kind]["cold_per_s"] = count / timed(partial(prove, cold, kind, xs))[1]
        finally:
            if reopen is not None:
                cold.close()
    for kind in kinds:
        prove(tree, kind, make(kind))  # warm-up
    root = tree.get_root(size)
    for r in range(args.rounds):
        for kind in alternating(kinds, r):
            xs = make(kind)
            proofs, seconds = timed(partial(prove, tree, kind, xs))
            out[kind]["warm_rounds"].append(count / seconds)
            out[kind]["verify_rounds"].append(
                count / timed(_pm_verifier(bench, pymerkle, tree, kind, root, xs, proofs))[1]
            )
    for kind in kinds:
        out[kind]["warm_per_s"] = median(out[kind]["warm_rounds"])
        out[kind]["verify_per_s"] = median(out[kind]["verify_rounds"])
    return out


def _pm_verifier(
    bench: Bench, pymerkle: Any, tree: Any, kind: str, root: bytes, xs: list[int], proofs: list[Any]
) -> Callable[[], None]:
    if kind == "inclusion":
        bases = [tree.get_leaf(i) for i in xs]
        work = list(zip(bases, proofs, strict=True))

        def run_inclusion() -> None:
            for base, proof in work:
                pymerkle.verify_inclusion(base, root, proof)

        fn = run_inclusion
    else:
        priors = [tree.get_root(m) for m in xs]
        work_c = list(zip(priors, proofs, strict=True))

        def run_consistency() -> None:
            for prior, proof in work_c:
                pymerkle.verify_consistency(prior, root, proof)

        fn = run_consistency

    def run() -> None:
        try:
            fn()
        except pymerkle.InvalidProof as exc:
            bench.problems.append(f"pymerkle {kind} proof failed its own verification: {exc}")

    return run


def _pm_cross_check(bench: Bench, tree: Any, size: int) -> bool:
    """Same entries, same RFC 9162 hashing: pymerkle's root and paths must equal domicile's."""
    theirs = tree.get_root(size)
    if bench.proof_db is not None and bench.proof_db_size >= size:
        region_log = bench.sqlite_log(bench.proof_db)
        try:
            ours = region_log.root(size)
            rng = random.Random(size)
            paths_agree = all(
                tree.prove_inclusion(i + 1, size).path[1:] == region_log.inclusion_proof(i, size)
                for i in (rng.randrange(size) for _ in range(20))
            )
        finally:
            region_log.db.close()
    else:
        compact = merkle.CompactRange()
        for start in range(0, size, 50_000):
            chunk = bench.entries.batch(start, min(50_000, size - start))
            compact.extend((merkle.leaf_hash(e) for e in chunk), record=False)
        ours, paths_agree = compact.root(), True
    agree = ours == theirs and paths_agree
    if not agree:
        bench.problems.append(f"pymerkle and domicile disagree at size {size:,}")
    return agree


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    pg_dsn = os.environ.get(PG_DSN_ENV, DEFAULT_PG_DSN)
    clean_domicile_env()
    signer_key, _ = generate_signer_key(ORIGIN)
    before = machine_info()
    t0 = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "ledger", "measured": "in process (library calls)"}
    with workdir(args.keep, args.dir) as work:
        bench = Bench(args, work, Entries(args.seed), Ed25519Signer.from_key(signer_key), pg_dsn)
        if "append" in args.sections:
            report["append"] = section_append(bench)
        if "proofs" in args.sections:
            report["proofs"] = section_proofs(bench)
        if "pymerkle" in args.sections:
            report["pymerkle"] = section_pymerkle(bench)
    report["settings"] = {
        k: v for k, v in vars(args).items() if k not in ("json", "keep", "dir")
    } | {"entry_bytes": ENTRY_SIZE, "domicile": version("domicile")}
    report["machine"] = {"before": before, "after": machine_info()}
    report["seconds"] = time.perf_counter() - t0
    report["problems"] = bench.problems
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 1 if bench.problems else 0


# -- output ---------------------------------------------------------------------------------


def print_report(report: dict[str, Any]) -> None:
    s = report["settings"]
    m = report["machine"]
    print(
        f"ledger: domicile {s['domicile']}, {s['entry_bytes']}-byte entries, medians of"
        f" {s['rounds']} rounds (cases alternate), measured {report['measured']}"
    )
    print(
        f"machine: {m['before']['cpus']} cpus, python {m['before']['python']}, load"
        f" {m['before']['loadavg']} -> {m['after']['loadavg']}; run took {report['seconds']:.0f} s"
    )
    if "append" in report:
        _print_append(report["append"], s)
    if "proofs" in report:
        _print_proofs(report["proofs"], report.get("append", {}).get("cases", []))
    if "pymerkle" in report:
        _print_pymerkle(report["pymerkle"], report)
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")
    print("(one run on a shared machine: read the ratios; the absolute numbers move run to run)")


def _print_append(res: dict[str, Any], s: dict[str, Any]) -> None:
    print()
    print("1. durable append throughput (one transaction and fsync per RegionLog.append)")
    for backend, settings in res["durability"].items():
        print(f"   {backend}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(
        f"   baseline: hashlib.sha256(200 bytes).digest() in a Python loop:"
        f" {fmt(res['sha256_per_s'])} hashes/s ({s['sha_inputs']:,} inputs per round)"
    )
    rows = []
    for c in res["cases"]:
        seq = c["threads"] is not None
        rows.append(
            [
                c["name"],
                fmt(c["per_s"]),
                f"{c['ratio_to_sha256']:.3f}",
                f"{c['ratio_to_target']:.2f}" if "ratio_to_target" in c else "",
                fmt(c["ack_p50_ms" if seq else "commit_p50_ms"], 1),
                fmt(c["ack_p99_ms" if seq else "commit_p99_ms"], 1),
                fmt(c["mean_batch"] if seq else c["batch"], 1 if seq else 0),
                " ".join(fmt(x) for x in c["rounds_per_s"]),
            ]
        )
    print()
    header = ["case", "entries/s", "/ sha256", "/ 100k", "p50 ms", "p99 ms", "per commit"]
    print(table([*header, "rounds"], rows))
    print(
        f"   append rounds: {s['append_entries']:,} entries; Sequencer rounds:"
        f" {s['seq_seconds']:g} s; p50/p99 = per commit (append) or per acknowledged entry"
        " (Sequencer); / 100k = SQLite target of issue 3"
    )
    for backend, why in res["skipped"].items():
        print(f"   {backend}: skipped ({why})")


def _print_proofs(res: dict[str, Any], appended: list[dict[str, Any]]) -> None:
    print()
    print("2. proofs served per second (RegionLog.inclusion_proof / consistency_proof, in process)")
    rows = [
        [
            f"{r['size']:,}",
            f"{r['build']['from']:,}",
            f"{r['build']['append_seconds']:.1f}",
            fmt(r["build"]["per_s"]),
            fmt(r["build"]["db_mb"]),
            fmt(r["inclusion"]["open_ms"], 1),
            fmt(r["build"]["sign_ms"], 1),
        ]
        for r in res["sizes"]
    ]
    print()
    print(
        table(["size", "built from", "build s", "entries/s", "db MB", "open ms", "sign ms"], rows)
    )
    empty = {c["batch"]: c["per_s"] for c in appended if c["backend"] == "sqlite" and c["batch"]}
    rows = []
    for r in res["sizes"]:
        for batch, a in r["append_at_size"].items():
            base = empty.get(int(batch))
            rows.append(
                [
                    f"{r['size']:,}",
                    f"RegionLog.append x{int(batch):,}",
                    fmt(a["per_s"]),
                    f"{a['per_s'] / APPEND_TARGET:.2f}",
                    f"{a['per_s'] / base:.2f}" if base else "",
                    " ".join(fmt(x) for x in a["rounds_per_s"]),
                ]
            )
    print()
    print(
        "   durable appends into the log of that size (SQLite), after its proofs were taken"
        " (/ small log = ratio to the same batch in section 1, whose logs stay small):"
    )
    print(table(["size", "append", "entries/s", "/ 100k", "/ small log", "rounds"], rows))
    rows = []
    for r in res["sizes"]:
        for kind in ("inclusion", "consistency"):
            k = r[kind]
            target = (
                f"{k['warm_per_s'] / PROOF_TARGET:.2f}" if r["size"] >= PROOF_TARGET_SIZE else ""
            )
            rows.append(
                [
                    f"{r['size']:,}",
                    kind,
                    fmt(k["cold_per_s"]),
                    fmt(k["warm_per_s"]),
                    target,
                    fmt(k["verify_per_s"]),
                    fmt(k["hashes"], 1),
                ]
            )
    print()
    print(table(["size", "proof", "cold/s", "warm/s", "/ 20k", "verify/s", "hashes"], rows))
    first = res["sizes"][0]
    print(
        "   cold = the first pass after opening a new RegionLog on the file (empty tile cache;"
        " OS page cache not dropped); warm = same RegionLog after a warm-up, fresh random"
        f" arguments each round; tile cache = {res['tile_cache']:,} tiles, and a log of n"
        f" entries has n/256 level-0 tiles (e.g. {first['size'] // TILE_WIDTH:,} at"
        f" {first['size']:,}); verify = merkle.verify_* on the round's proofs (leaf hashes and"
        " old roots prepared outside the timing); / 20k = target of issue 3 at 10M"
    )


def _print_pymerkle(res: dict[str, Any], report: dict[str, Any]) -> None:
    print()
    if "skipped" in res:
        print(f"3. pymerkle: skipped ({res['skipped']})")
        return
    print(f"3. pymerkle {res['version']}, same entries, same run (sizes capped)")
    app = res["append"]
    print(
        "   SqliteTree durability: " + ", ".join(f"{k}={v}" for k, v in app["durability"].items())
    )
    ours = {
        c["batch"]: c["per_s"]
        for c in report.get("append", {}).get("cases", [])
        if c["backend"] == "sqlite" and c["batch"]
    }
    rows = []
    for name, per_s in app["per_s"].items():
        batch = int(name.split("x")[1]) if name.startswith("sqlite") else None
        label = (
            f"SqliteTree.append_entries x{batch:,}"
            if batch
            else "InmemoryTree.append_entries (not durable)"
        )
        mine = ours.get(batch) if batch else None
        rows.append(
            [label, fmt(per_s), fmt(mine) if mine else "", f"{mine / per_s:.2f}" if mine else ""]
        )
    print()
    print(table(["append", "entries/s", "domicile/s", "domicile / pymerkle"], rows))
    ours_at = {r["size"]: r for r in report.get("proofs", {}).get("sizes", [])}
    rows = []
    for tree in res["trees"]:
        for r in tree["sizes"]:
            rows.append(_proof_row(tree["tree"], r, r["root_matches_domicile"]))
    for size in sorted({r["size"] for t in res["trees"] for r in t["sizes"]} & set(ours_at)):
        rows.append(_proof_row("domicile RegionLog", ours_at[size], None))
    print()
    header = ["tree", "size", "build/s", "incl cold/s", "incl warm/s", "cons cold/s"]
    header += ["cons warm/s", "verify incl/s", "verify cons/s", "same root"]
    print(table(header, rows))
    print(
        "   build: append_entries in batches of the proof section's --build-batch;"
        " cold for SqliteTree = a new SqliteTree on the file (empty subroot cache);"
        " InmemoryTree has no cache to warm; same root = pymerkle's root and inclusion"
        " paths equal domicile's for the same entries"
    )


def _proof_row(name: str, r: dict[str, Any], same: bool | None) -> list[str]:
    i, c = r["inclusion"], r["consistency"]
    return [
        name,
        f"{r['size']:,}",
        fmt(r["build"]["per_s"]),
        fmt(i["cold_per_s"]),
        fmt(i["warm_per_s"]),
        fmt(c["cold_per_s"]),
        fmt(c["warm_per_s"]),
        fmt(i["verify_per_s"]),
        fmt(c["verify_per_s"]),
        "" if same is None else ("yes" if same else "NO"),
    ]


if __name__ == "__main__":
    sys.exit(main())
