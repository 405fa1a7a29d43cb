"""Threshold counting (issue 5): `ThresholdCounter.check_and_count` over many transfer
events on SQLite, against a raw INSERT of the same (ref, country, class, time) rows into a
plain SQLite table, in the same run.

    .venv/bin/python bench/thresholds.py [--events 10000000] [--batch 1000] [--json]

An event is one subject sent to one destination country. Events come in batches of
--batch subjects to one country (one `check_and_count` call, one write transaction), the
countries taking turns over --countries countries and the subjects drawn from a pool of
--subjects, so subjects recur (the counter's update path) and each country counts up to
--subjects distinct people. Times advance one second per batch, inside the 365-day window.
The fields sent are `email` (pseudonymised), one data class (`personal_identifiers`),
whose limit is raised so that nothing blocks.

The baseline computes the same keyed refs (HMAC-SHA256, 128 bits) and INSERTs the same
rows in the same batches into one table without indexes, on a connection with the same
settings as Domicile's (WAL, synchronous=FULL, secure_delete). Each side runs in its own
child process, so its peak RSS (VmHWM) is its own; RSS is also sampled at 25/50/75/100 %
of the events. At the end the counter's distinct count per country is compared with
COUNT(DISTINCT) of the baseline table (exit status 1 if they differ). Nothing is asserted
about time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import (
    clean_domicile_env,
    fmt,
    log,
    machine_info,
    median,
    print_child_result,
    ratio,
    rss_kib,
    run_child,
    table,
    workdir,
)

KEY = bytes(range(32))
FIELDS = {"email": "pseudonymise"}
CLASS = "personal_identifiers"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
COUNTRIES = ("US", "GB", "CH", "JP", "SG", "IN", "BR", "CA", "AU", "KR", "MX", "ZA", "NG",
             "AR", "CL", "NZ", "IL", "AE", "TH", "ID", "MY", "PH", "VN", "TR", "EG")  # fmt: skip
_REF_LABEL = b"domicile-transfer-ref/v1\x00"  # as in domicile.transfers.thresholds


def batches(args: dict[str, Any]) -> Iterator[tuple[int, str, list[str], datetime]]:
    """(events so far, country, subject ids, time) for each batch; the same on both sides."""
    events, size, pool = args["events"], args["batch"], args["subjects"]
    countries = COUNTRIES[: args["countries"]]
    done, b = 0, 0
    while done < events:
        n = min(size, events - done)
        # A stride that is coprime with the pool walks it without repeats inside a batch.
        ids = [f"{((done + j) * 7_919) % pool:032x}" for j in range(n)]
        yield done + n, countries[b % len(countries)], ids, T0 + timedelta(seconds=b)
        done += n
        b += 1


def db_bytes(path: Path) -> int:
    """Size of a SQLite database with its WAL and shared-memory files."""
    return sum(
        p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )


def run_counter(args: dict[str, Any]) -> dict[str, Any]:
    """check_and_count for every batch, on a fresh SQLite database."""
    from domicile.storage.database import open_database
    from domicile.storage.url import SqliteUrl
    from domicile.transfers.thresholds import ThresholdConfig, ThresholdCounter

    path = Path(args["dir"]) / "counter.db"
    db = open_database(SqliteUrl(path))
    config = ThresholdConfig(limits={CLASS: 10**12}, field_classes={"email": CLASS})
    counter = ThresholdCounter(db, KEY, config)
    marks = _marks(args["events"])
    rss, at_marks, blocked = [], [], 0
    start = time.perf_counter()
    for done, country, ids, at in batches(args):
        status = counter.check_and_count(
            destination_country=country, fields=FIELDS, subject_ids=ids, at=at
        )
        blocked += not status.counted
        while marks and done >= marks[0]:
            marks.pop(0)
            rss.append(rss_kib())
            at_marks.append(time.perf_counter() - start)
    seconds = time.perf_counter() - start
    end = T0 + timedelta(days=1)
    counts = {
        c: counter.count(f"country:{c}", CLASS, at=end) for c in COUNTRIES[: args["countries"]]
    }
    db.close()
    quarters = _quarters(args["events"], at_marks)
    return {"seconds": seconds, "rss": rss, "blocked": blocked, "counts": counts,
            "db_bytes": db_bytes(path), "quarters": quarters}  # fmt: skip


def run_raw(args: dict[str, Any]) -> dict[str, Any]:
    """The same refs and rows, INSERTed into a plain table, one transaction per batch."""
    path = Path(args["dir"]) / "raw.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("CREATE TABLE events (ref TEXT, country TEXT, data_class TEXT, at INTEGER)")
    marks = _marks(args["events"])
    rss, at_marks = [], []
    start = time.perf_counter()
    for done, country, ids, at in batches(args):
        now_s = int(at.timestamp())
        rows = [
            (hmac.digest(KEY, _REF_LABEL + s.encode(), hashlib.sha256)[:16].hex(), country, CLASS,
             now_s)
            for s in ids
        ]  # fmt: skip
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        while marks and done >= marks[0]:
            marks.pop(0)
            rss.append(rss_kib())
            at_marks.append(time.perf_counter() - start)
    seconds = time.perf_counter() - start
    counts = dict(
        conn.execute("SELECT country, COUNT(DISTINCT ref) FROM events GROUP BY country").fetchall()
    )
    conn.close()
    return {"seconds": seconds, "rss": rss, "counts": counts, "db_bytes": db_bytes(path),
            "quarters": _quarters(args["events"], at_marks)}  # fmt: skip


def _quarters(events: int, at_marks: list[float]) -> list[float]:
    """Events/s in each quarter of the run (flat = the cost does not grow with the table)."""
    bounds = [0.0, *at_marks]
    return [events / 4 / max(b - a, 1e-9) for a, b in itertools.pairwise(bounds)]


def _marks(events: int) -> list[int]:
    return [max(1, events * q // 4) for q in (1, 2, 3, 4)]


def run_side(side: str, ctx: str) -> None:
    """Entry point of a child: print its result as JSON."""
    args = json.loads(ctx)
    print_child_result(run_counter(args) if side == "counter" else run_raw(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=1000, help="subjects per check_and_count")
    parser.add_argument("--subjects", type=int, default=1_000_000, help="pool of subject ids")
    parser.add_argument("--countries", type=int, default=20, choices=range(1, len(COUNTRIES) + 1),
                        metavar=f"1..{len(COUNTRIES)}")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--side", choices=["counter", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.ctx)
        return
    clean_domicile_env()
    runs: dict[str, list[dict[str, Any]]] = {"check_and_count": [], "raw INSERT": []}
    with workdir(args.keep, args.dir) as work:
        for round_no in range(args.rounds):
            order = ["counter", "raw"] if round_no % 2 == 0 else ["raw", "counter"]
            for side in order:
                where = work / f"round{round_no}-{side}"
                where.mkdir()
                ctx = {"events": args.events, "batch": args.batch, "subjects": args.subjects,
                       "countries": args.countries, "dir": str(where)}  # fmt: skip
                log(f"round {round_no + 1}: {side}, {args.events:,} events …")
                result = run_child(__file__, "--side", side, ctx)
                runs["check_and_count" if side == "counter" else "raw INSERT"].append(result)
                os.sync()
                log(f"  {args.events / result['seconds']:,.0f} events/s")
    mismatch = any(
        c["counts"] != r["counts"]
        for c in runs["check_and_count"]
        for r in runs["raw INSERT"]
    )  # fmt: skip
    blocked = sum(r["blocked"] for r in runs["check_and_count"])
    rates = {name: median([args.events / r["seconds"] for r in v]) for name, v in runs.items()}
    summary = {
        "events": args.events,
        "batch": args.batch,
        "subjects": args.subjects,
        "countries": args.countries,
        "rounds": args.rounds,
        "events_per_s": rates,
        "counter_vs_raw": ratio(rates["check_and_count"], rates["raw INSERT"]),
        "runs": runs,
        "counts_match": not mismatch,
        "blocked_batches": blocked,
        "machine": machine_info(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows = []
        for name, v in runs.items():
            rows.append([
                name,
                fmt(median([r["seconds"] for r in v]), 1),
                fmt(rates[name]),
                f"{ratio(rates[name], rates['raw INSERT']):.3f}",
                fmt(median([r["peak_rss"] for r in v]) / 1024),
                " / ".join(fmt(kib / 1024) for kib in v[-1]["rss"]),
                " / ".join(fmt(rate) for rate in v[-1]["quarters"]),
                fmt(median([r["db_bytes"] for r in v]) / 2**20, 1),
            ])  # fmt: skip
        header = ["path", "seconds", "events/s", "vs raw", "peak RSS MiB",
                  "RSS MiB at 25/50/75/100 %", "events/s per quarter", "db MiB"]  # fmt: skip
        print(table(header, rows))
        distinct = sum(runs["check_and_count"][-1]["counts"].values())
        print(
            f"\n{args.events:,} events in batches of {args.batch:,}, {args.countries} countries,"
            f" pool of {args.subjects:,} subjects ({distinct:,} distinct (country, subject)"
            f" counted); medians of {args.rounds} round(s); counts match the baseline:"
            f" {not mismatch}; blocked batches: {blocked}; machine: {machine_info()}"
        )
    if mismatch or blocked:
        sys.exit(1)


if __name__ == "__main__":
    main()
