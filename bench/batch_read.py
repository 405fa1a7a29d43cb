"""Batch reads (POST /v1/subjects:batchGet) with a decision per record, each recorded in the
ledger, against a raw SELECT of the same rows from a plain SQLite table (same run).

    .venv/bin/python bench/batch_read.py [--subjects 20000] [--batch 1000] [--rounds 3]

Prints records/s for the HTTP path (one client, sequential requests), the gateway in
process, and the raw baseline, with ratios. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from benchlib import clean_domicile_env, http_json, log, machine_info, server, table, workdir
from domicile.demo import demo_people
from domicile.runtime import open_runtime
from domicile.settings import Settings

FIELDS = ["email", "phone", "display_name"]


def prepare(work: Path, count: int) -> tuple[Path, str, list[str], Path]:
    """A data dir with `count` Irish subjects, a token, and the same rows in plain SQLite."""
    data_dir = work / "data"
    runtime = open_runtime(Settings(data_dir=data_dir))
    token = runtime.principals.add("bench-svc", "Bench Ltd", "IE", {"service"})
    principal = runtime.gateway.authenticate(token)
    people = [("IE", fields) for _, fields in demo_people(count)]
    ids: list[str] = []
    for start in range(0, count, 1000):
        placed = runtime.gateway.register_many(principal, people[start : start + 1000])
        ids += [sid for sid, _ in placed]
    runtime.close()
    raw = work / "raw.db"
    conn = sqlite3.connect(raw)
    conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, email TEXT, phone TEXT, name TEXT)")
    conn.executemany(
        "INSERT INTO people VALUES (?, ?, ?, ?)",
        [
            (sid, p["email"], p["phone"], p["display_name"])
            for sid, (_, p) in zip(ids, people, strict=True)
        ],
    )
    conn.commit()
    conn.close()
    return data_dir, token, ids, raw


def raw_rate(raw: Path, ids: list[str], batch: int) -> float:
    """Records/s of plain SELECT … WHERE id IN (…) over the same rows."""
    conn = sqlite3.connect(raw)
    start, n = time.perf_counter(), 0
    for at in range(0, len(ids), batch):
        chunk = ids[at : at + batch]
        for part in range(0, len(chunk), 500):
            sub = chunk[part : part + 500]
            marks = ",".join("?" * len(sub))
            n += len(conn.execute(f"SELECT * FROM people WHERE id IN ({marks})", sub).fetchall())
    conn.close()
    return n / (time.perf_counter() - start)


def http_rate(base: str, token: str, ids: list[str], batch: int) -> float:
    """Records/s through the API, one request after another."""
    headers = {"Authorization": f"Bearer {token}"}
    start, n = time.perf_counter(), 0
    for at in range(0, len(ids), batch):
        body = {"ids": ids[at : at + batch], "fields": FIELDS, "purpose": "support"}
        status, data = http_json("POST", f"{base}/v1/subjects:batchGet", headers=headers,
                                 body=body, timeout=120)  # fmt: skip
        if status != 200 or any("subject" not in item for item in data["items"]):
            raise SystemExit(f"batchGet answered {status}: {str(data)[:300]}")
        n += len(data["items"])
    return n / (time.perf_counter() - start)


def inprocess_rate(data_dir: Path, token: str, ids: list[str], batch: int) -> float:
    """Records/s of Gateway.batch_get in this process."""
    runtime = open_runtime(Settings(data_dir=data_dir))
    try:
        principal = runtime.gateway.authenticate(token)
        start, n = time.perf_counter(), 0
        for at in range(0, len(ids), batch):
            n += len(runtime.gateway.batch_get(principal, ids[at : at + batch], FIELDS, "support"))
        return n / (time.perf_counter() - start)
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clean_domicile_env()
    rates: dict[str, list[float]] = {"http": [], "in process": [], "raw": []}
    with workdir(False) as work:
        log(f"registering {args.subjects} subjects …")
        data_dir, token, ids, raw = prepare(work, args.subjects)
        for round_no in range(args.rounds):
            rates["raw"].append(raw_rate(raw, ids, args.batch))
            rates["in process"].append(inprocess_rate(data_dir, token, ids, args.batch))
            with server("domicile", ["domicile", "--data-dir", str(data_dir)], workdir=work) as s:
                rates["http"].append(http_rate(s.base, token, ids, args.batch))
            log(
                f"round {round_no + 1}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items())
            )
    med = {name: statistics.median(values) for name, values in rates.items()}
    rows = [[name, f"{rate:,.0f}", f"{rate / med['raw']:.3f}"] for name, rate in med.items()]
    print(table(["path (decision + ledger entry per record)", "records/s", "vs raw SELECT"], rows))
    print(
        f"\n{args.subjects} subjects, batches of {args.batch}, medians of {args.rounds} rounds;"
        f" machine: {machine_info()}"
    )


if __name__ == "__main__":
    main()
