"""Batch reads (POST /v1/subjects:batchGet) with a decision per record, each recorded in the
ledger, against a raw SELECT of the same rows from a plain SQLite table (same run).

    .venv/bin/python bench/batch_read.py [--subjects 20000] [--batch 1000] [--rounds 3]

Prints records/s for the HTTP path (one client, sequential requests), the gateway in
process, and two baselines, with ratios; and for the two gateway paths the CPU time per
record (the server process's, all its threads; this process's for the in-process path),
which a shared machine disturbs less than it does rates. `raw` is a plain SELECT of the
same rows, and `floor` is the least work in Python that the batch read's guarantees need
per record, with none of the pipeline around it: read a sealed row and a wrapped key,
unwrap the key (AES-GCM), open three values, make a keyed ref (HMAC-SHA256) and a
decision id, encode a ledger entry from a template and hash its leaf, write the entries
and the unwrap rows durably (two WAL commits with synchronous=FULL per batch), and encode
the answer. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import secrets
import sqlite3
import statistics
import time
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchlib import (
    clean_domicile_env,
    cpu_seconds,
    http_json,
    log,
    machine_info,
    server,
    table,
    workdir,
)
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
    kek_key = os.urandom(32)
    kek = AESGCM(kek_key)
    sealed = []
    for sid, (_, p) in zip(ids, people, strict=True):
        key = os.urandom(32)
        cipher, nonce = AESGCM(key), os.urandom(12)
        row = [sid, nonce + kek.encrypt(nonce, key, sid.encode())]
        for name in FIELDS:
            nonce = os.urandom(12)
            row.append(nonce + cipher.encrypt(nonce, orjson.dumps(p[name]), name.encode()))
        sealed.append(row)
    conn.execute("CREATE TABLE sealed (id TEXT PRIMARY KEY, wrapped BLOB, a BLOB, b BLOB, c BLOB)")
    conn.executemany("INSERT INTO sealed VALUES (?, ?, ?, ?, ?)", sealed)
    conn.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB)")
    conn.execute("CREATE TABLE unwraps (id INTEGER PRIMARY KEY, ref TEXT, decision TEXT)")
    conn.commit()
    conn.close()
    (work / "floor.kek").write_bytes(kek_key)
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


def floor_rate(raw: Path, ids: list[str], batch: int) -> float:
    """Records/s of the least work in Python the batch read's guarantees need (see top)."""
    kek = AESGCM((raw.parent / "floor.kek").read_bytes())
    ref_key = os.urandom(32)
    template = orjson.dumps(
        {"v": 1, "kind": "decision", "decision_id": "@id@", "subject_ref": "@ref@",
         "input": {"principal": {"id": "p" * 32, "roles": ["service"]}, "fields": FIELDS}},
        option=orjson.OPT_SORT_KEYS,
    ).split(b"@")  # fmt: skip
    conn = sqlite3.connect(raw, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    start, n = time.perf_counter(), 0
    for at in range(0, len(ids), batch):
        chunk = ids[at : at + batch]
        rows = []
        for part in range(0, len(chunk), 400):
            sub = chunk[part : part + 400]
            marks = ",".join("?" * len(sub))
            rows += conn.execute(f"SELECT * FROM sealed WHERE id IN ({marks})", sub).fetchall()
        pool = secrets.token_hex(16 * len(rows))
        entries, unwraps, items = [], [], []
        for i, (sid, wrapped, *values) in enumerate(rows):
            decision = pool[32 * i : 32 * i + 32]
            ref = hmac.new(ref_key, sid.encode(), hashlib.sha256).hexdigest()[:32]
            entry = b"".join((template[0], decision.encode(), template[2], ref.encode(),
                              template[4]))  # fmt: skip
            entries.append((hashlib.sha256(b"\x00" + entry).digest() + entry,))
            cipher = AESGCM(kek.decrypt(wrapped[:12], wrapped[12:], sid.encode()))
            fields = {
                name: orjson.loads(cipher.decrypt(v[:12], v[12:], name.encode()))
                for name, v in zip(FIELDS, values, strict=True)
            }
            unwraps.append((ref, decision))
            items.append({"id": sid, "subject": {"id": sid, "fields": fields}})
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO entries (data) VALUES (?)", entries)
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO unwraps (ref, decision) VALUES (?, ?)", unwraps)
        conn.execute("COMMIT")
        n += len(orjson.dumps({"items": items})) and len(items)
    conn.close()
    return n / (time.perf_counter() - start)


def http_rate(base: str, token: str, ids: list[str], batch: int, pid: int) -> tuple[float, float]:
    """Records/s through the API, one request after another, and the server's (`pid`)
    CPU µs per record."""
    headers = {"Authorization": f"Bearer {token}"}
    cpu, start, n = cpu_seconds(pid), time.perf_counter(), 0
    for at in range(0, len(ids), batch):
        body = {"ids": ids[at : at + batch], "fields": FIELDS, "purpose": "support"}
        status, data = http_json("POST", f"{base}/v1/subjects:batchGet", headers=headers,
                                 body=body, timeout=120)  # fmt: skip
        if status != 200 or any("subject" not in item for item in data["items"]):
            raise SystemExit(f"batchGet answered {status}: {str(data)[:300]}")
        n += len(data["items"])
    return n / (time.perf_counter() - start), (cpu_seconds(pid) - cpu) / n * 1e6


def inprocess_rate(data_dir: Path, token: str, ids: list[str], batch: int) -> tuple[float, float]:
    """Records/s of Gateway.batch_get in this process, and its CPU µs per record."""
    runtime = open_runtime(Settings(data_dir=data_dir))
    try:
        principal = runtime.gateway.authenticate(token)
        cpu, start, n = cpu_seconds(), time.perf_counter(), 0
        for at in range(0, len(ids), batch):
            n += len(runtime.gateway.batch_get(principal, ids[at : at + batch], FIELDS, "support"))
        return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n * 1e6
    finally:
        runtime.close()


def _served(
    work: Path, data_dir: Path, token: str, ids: list[str], batch: int
) -> tuple[float, float]:
    with server("domicile", ["domicile", "--data-dir", str(data_dir)], workdir=work) as s:
        return http_rate(s.base, token, ids, batch, s.process.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    clean_domicile_env()
    rates: dict[str, list[float]] = {"http": [], "in process": [], "floor": [], "raw": []}
    cpu: dict[str, list[float]] = {"http": [], "in process": []}
    with workdir(False) as work:
        log(f"registering {args.subjects} subjects …")
        data_dir, token, ids, raw = prepare(work, args.subjects)
        for round_no in range(args.rounds):
            rates["raw"].append(raw_rate(raw, ids, args.batch))
            rates["floor"].append(floor_rate(raw, ids, args.batch))
            for name, (rate, us) in (
                ("in process", inprocess_rate(data_dir, token, ids, args.batch)),
                ("http", _served(work, data_dir, token, ids, args.batch)),
            ):
                rates[name].append(rate)
                cpu[name].append(us)
            log(
                f"round {round_no + 1}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items())
            )
    med = {name: statistics.median(values) for name, values in rates.items()}
    us = {name: f"{statistics.median(values):.1f}" for name, values in cpu.items()}
    rows = [
        [name, f"{rate:,.0f}", f"{rate / med['floor']:.3f}", f"{rate / med['raw']:.3f}",
         us.get(name, "-")]
        for name, rate in med.items()
    ]  # fmt: skip
    header = ["path (decision + ledger entry per record)", "records/s", "vs floor", "vs raw",
              "CPU µs/record"]  # fmt: skip
    print(table(header, rows))
    print(
        f"\n{args.subjects} subjects, batches of {args.batch}, medians of {args.rounds} rounds;"
        f" machine: {machine_info()}"
    )


if __name__ == "__main__":
    main()
