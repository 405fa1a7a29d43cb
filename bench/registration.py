"""Registration throughput (subjects/s) on SQLite and PostgreSQL, against raw inserts.

For each backend, in the same run and in alternating rounds:

- http:   POST /v1/subjects, one subject per request, loaded by wrk (a Lua script varies
          the country over IE/DE/NO/US/SG/JP so every region is written);
- batch:  runtime.gateway.register_many in batches of 500 (in process);
- raw:    the baseline, plain INSERTs of as many rows of the same people into one plain
          table of the same database (same directory and pragmas for SQLite, another
          schema of the same database for PostgreSQL), 500 rows per transaction;
- raw1:   for context, plain INSERTs one row per transaction (what one request commits).

Prints the median subjects/s of the rounds and the ratio to the raw baseline. Nothing
is asserted: a timing is a figure, not a test. PostgreSQL comes from
$DOMICILE_BENCH_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test); its schemas
are dropped afterwards.

    .venv/bin/python bench/registration.py [--seconds 5] [--rounds 3] [--subjects 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchlib import (
    DEFAULT_PG_DSN,
    PG_DSN_ENV,
    clean_domicile_env,
    fmt,
    http_json,
    log,
    machine_info,
    median,
    ratio,
    require_wrk,
    run_wrk,
    server,
    table,
    workdir,
    wrk_version,
)
from domicile.demo import demo_people, demo_person
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings
from domicile.storage.postgres import drop_schema
from domicile.storage.url import PostgresUrl

HTTP_COUNTRIES = ("IE", "DE", "NO", "US", "SG", "JP")
COLUMNS = (
    "full_name",
    "email",
    "phone",
    "birth_date",
    "ip_address",
    "display_name",
    "follower_count",
)
PATHS = ("http", "batch", "raw", "raw1")
LABELS = {
    "http": "http POST /v1/subjects, 1 per request",
    "batch": "gateway.register_many, 500 per batch",
    "raw": "raw INSERT, 500 rows/tx (baseline)",
    "raw1": "raw INSERT, 1 row/tx",
}
Person = tuple[str, Mapping[str, Any]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5, help="length of one http round (s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path")
    parser.add_argument(
        "--subjects", type=int, default=20000, help="subjects per batch/raw round (500 per batch)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=15,
        help="stop a batch/raw round after this long, counting what was done",
    )
    parser.add_argument(
        "--raw1-seconds", type=float, default=2, help="length of one raw 1-row/tx round (s)"
    )
    parser.add_argument("--batch", type=int, default=500, help="subjects per batch/transaction")
    parser.add_argument("--warmup", type=float, default=1, help="http warm-up (s)")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("-c", "--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument("--loop", default="auto", help="uvicorn loop")
    parser.add_argument("--http", default="auto", help="uvicorn http")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to make the temporary directory"
    )
    return parser.parse_args()


# -- the raw baseline ---------------------------------------------------------------------


def _raw_row(person: Person) -> tuple[Any, ...]:
    country, values = person
    return (uuid.uuid4().hex, country, *(values.get(c) for c in COLUMNS))


_CREATE_RAW = (
    "CREATE TABLE raw_people (id TEXT PRIMARY KEY, country TEXT NOT NULL, full_name TEXT,"
    " email TEXT, phone TEXT, birth_date TEXT, ip_address TEXT, display_name TEXT,"
    " follower_count INTEGER)"
)
_INSERT_COLUMNS = "id, country, " + ", ".join(COLUMNS)


class RawSqlite:
    """A plain table in a SQLite file beside Domicile's, with Domicile's pragmas."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute(_CREATE_RAW)
        marks = ", ".join("?" for _ in range(2 + len(COLUMNS)))
        self.insert_sql = f"INSERT INTO raw_people ({_INSERT_COLUMNS}) VALUES ({marks})"

    def insert(self, people: Sequence[Person]) -> None:
        """Insert `people` in one transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(self.insert_sql, [_raw_row(p) for p in people])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class RawPostgres:
    """A plain table in its own schema of the same PostgreSQL database."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        self.conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        self.conn.execute(_CREATE_RAW)
        marks = ", ".join("%s" for _ in range(2 + len(COLUMNS)))
        self.insert_sql = f"INSERT INTO raw_people ({_INSERT_COLUMNS}) VALUES ({marks})"

    def insert(self, people: Sequence[Person]) -> None:
        """Insert `people` in one transaction."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(self.insert_sql, [_raw_row(p) for p in people])

    def close(self) -> None:
        self.conn.close()


# -- measurements -------------------------------------------------------------------------


def timed_batches(
    people: Sequence[Person],
    batch: int,
    max_seconds: float,
    write: Callable[[Sequence[Person]], Any],
) -> dict[str, float]:
    """Write `people` in batches; stop after `max_seconds`; return count, seconds, rate."""
    done = 0
    start = time.perf_counter()
    for offset in range(0, len(people), batch):
        chunk = people[offset : offset + batch]
        write(chunk)
        done += len(chunk)
        if time.perf_counter() - start > max_seconds:
            break
    seconds = time.perf_counter() - start
    return {"subjects": done, "seconds": seconds, "per_s": ratio(done, seconds)}


def timed_single(
    people: Sequence[Person], seconds: float, raw: RawSqlite | RawPostgres
) -> dict[str, float]:
    """Insert one row per transaction for `seconds`."""
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        raw.insert([people[done % len(people)]])
        done += 1
    elapsed = time.perf_counter() - start
    return {"subjects": done, "seconds": elapsed, "per_s": ratio(done, elapsed)}


def http_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """Registration bodies whose country cycles over one or more countries per region."""
    rng = random.Random(seed)
    return [
        {"country": HTTP_COUNTRIES[i % len(HTTP_COUNTRIES)], "fields": demo_person(rng)[1]}
        for i in range(count)
    ]


def write_lua(path: Path, token: str, bodies: Sequence[Mapping[str, Any]]) -> None:
    """A wrk script cycling through pre-formatted POST /v1/subjects requests."""
    lines = [
        "-- written by bench/registration.py: POST /v1/subjects with varied bodies",
        f'local token = "{token}"',
        "local bodies = {",
        *(f"  [==[{json.dumps(b)}]==]," for b in bodies),
        "}",
        "local requests = {}",
        "local n = 0",
        "function init(args)",
        '  local headers = {["Content-Type"] = "application/json",'
        ' ["Authorization"] = "Bearer " .. token}',
        "  for i, body in ipairs(bodies) do",
        '    requests[i] = wrk.format("POST", "/v1/subjects", headers, body)',
        "  end",
        "end",
        "function request()",
        "  n = n % #requests + 1",
        "  return requests[n]",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def check_http(base: str, token: str, runtime: Runtime) -> None:
    """One POST per country must answer 201 with the country's home region."""
    for body in http_bodies(len(HTTP_COUNTRIES), seed=1):
        status, answer = http_json(
            "POST", f"{base}/v1/subjects", headers={"Authorization": f"Bearer {token}"}, body=body
        )
        want = runtime.topology.home_region(body["country"])
        if status != 201 or not isinstance(answer, dict) or answer.get("home_region") != want:
            raise SystemExit(
                f"error: POST /v1/subjects ({body['country']}) answered {status} {answer!r},"
                f" expected 201 in {want}"
            )
    log(f"http: 201 for {', '.join(HTTP_COUNTRIES)}, each in its home region")


# -- one backend --------------------------------------------------------------------------


def backend_settings(backend: str, data_dir: Path, dsn: str, prefix: str) -> Settings:
    """Settings of one Domicile store: a data directory, plus schemas `<prefix>_*` on PostgreSQL."""
    storage_url = None
    if backend == "postgres":
        storage_url = f"{dsn}{'&' if '?' in dsn else '?'}schema={prefix}"
    return Settings(data_dir=data_dir, storage_url=storage_url)


def stored(settings: Settings) -> dict[str, int]:
    """Active subjects per region in a store no other process has open."""
    runtime = open_runtime(settings)
    try:
        return dict(sorted(runtime.directory.counts().items()))
    finally:
        runtime.close()


def bench_backend(
    backend: str, work: Path, args: argparse.Namespace, wrk: str, dsn: str
) -> dict[str, Any]:
    """Run every path on one backend; return rounds, medians and checks."""
    folder = work / backend
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    # The server and the in-process batch path each get their own store (data directory,
    # or schema prefix): one store is opened by one gateway process at a time.
    http_settings = backend_settings(backend, folder / "http", dsn, prefix + "h")
    batch_settings = backend_settings(backend, folder / "batch", dsn, prefix + "b")
    rounds: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
    problems: list[str] = []
    people = list(demo_people(args.rounds * args.subjects, seed=2026))
    runtime: Runtime | None = None
    raw: RawSqlite | RawPostgres | None = None
    try:
        setup = open_runtime(http_settings)
        try:
            token = setup.principals.add("bench-svc", "Bench Ltd", "IE", {"service"})
        finally:
            setup.close()
        runtime = open_runtime(batch_settings)
        principal = runtime.principals.authenticate(
            runtime.principals.add("bench-svc", "Bench Ltd", "IE", {"service"})
        )
        raw = (
            RawSqlite(batch_settings.data_dir / "raw.db")
            if backend == "sqlite"
            else RawPostgres(dsn, f"{prefix}_raw")
        )
        lua = folder / "register.lua"
        write_lua(lua, token, http_bodies(600, seed=3))
        serve_args = ["domicile", "--data-dir", str(http_settings.data_dir)]
        if http_settings.storage_url:
            serve_args += ["--storage-url", http_settings.storage_url]
        serve_args += ["--loop", args.loop, "--http", args.http]
        http_sent = len(HTTP_COUNTRIES)
        batch_done = 0
        with server(f"domicile-{backend}", serve_args, workdir=work) as srv:
            check_http(srv.base, token, runtime)

            def http_round(seconds: float) -> dict[str, Any]:
                res = run_wrk(
                    wrk,
                    f"{srv.base}/v1/subjects",
                    threads=args.threads,
                    connections=args.connections,
                    seconds=seconds,
                    script=lua,
                )
                return {
                    **res.as_dict(),
                    "subjects": res.requests,
                    "per_s": res.rps,
                    "clean": res.clean,
                }

            def register(chunk: Sequence[Person]) -> object:
                assert runtime is not None
                return runtime.gateway.register_many(principal, chunk)

            warm = http_round(args.warmup)
            http_sent += warm["requests"]
            log(f"{backend} warm-up http: {warm['per_s']:,.0f} subjects/s")
            for round_no in range(args.rounds):
                mine = people[round_no * args.subjects : (round_no + 1) * args.subjects]
                order = PATHS if round_no % 2 == 0 else tuple(reversed(PATHS))
                for path in order:
                    if path == "http":
                        res = http_round(args.seconds)
                        http_sent += res["requests"]
                        if not res["clean"]:
                            problems.append(
                                f"{backend} http round {round_no + 1}: {res['non_2xx']} non-2xx,"
                                f" socket errors {res['socket_errors']}"
                            )
                    elif path == "batch":
                        res = timed_batches(mine, args.batch, args.max_seconds, register)
                        batch_done += int(res["subjects"])
                    elif path == "raw":
                        res = timed_batches(mine, args.batch, args.max_seconds, raw.insert)
                    else:
                        res = timed_single(mine, args.raw1_seconds, raw)
                    rounds[path].append(res)
                    log(
                        f"{backend} round {round_no + 1}/{args.rounds} {path:5s}"
                        f" {res['per_s']:9,.0f} subjects/s ({int(res['subjects'])} in"
                        f" {res['seconds']:.1f} s)"
                    )
            if srv.process.poll() is not None:
                problems.append(f"{backend} server died:\n{srv.log_tail()}")
        batch_counts = dict(sorted(runtime.directory.counts().items()))
        all_regions = set(runtime.topology.regions)
        runtime.close()
        runtime = None
        http_counts = stored(http_settings)
        log(f"{backend} stored per region: http {http_counts}, batch {batch_counts}")
        if sum(http_counts.values()) < http_sent:
            problems.append(
                f"{backend}: wrk counted {http_sent} http registrations,"
                f" the directory holds only {sum(http_counts.values())}"
            )
        if sum(batch_counts.values()) != batch_done:
            problems.append(
                f"{backend}: register_many stored {sum(batch_counts.values())}"
                f" subjects, not {batch_done}"
            )
        missing = all_regions - {region for region, n in http_counts.items() if n > 0}
        if missing:
            problems.append(f"{backend}: no http registration stored in {sorted(missing)}")
    finally:
        if raw is not None:
            raw.close()
        if runtime is not None:
            runtime.close()
        if backend == "postgres":
            drop_prefix(dsn, prefix)
    medians = {p: median([r["per_s"] for r in rounds[p]]) for p in PATHS}
    return {
        "rounds": rounds,
        "median_per_s": medians,
        "ratio_to_raw": {p: ratio(medians[p], medians["raw"]) for p in PATHS},
        "ratio_to_raw1": {p: ratio(medians[p], medians["raw1"]) for p in PATHS},
        "http_latency_ms": {
            "p50": median([r["p50_ms"] for r in rounds["http"]]),
            "p99": median([r["p99_ms"] for r in rounds["http"]]),
        },
        "stored_per_region": {"http": http_counts, "batch": batch_counts},
        "problems": problems,
    }


def drop_prefix(dsn: str, prefix: str) -> None:
    """Drop every schema whose name starts with `prefix` (as tests/conftest.py does)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE %s",
            (prefix + "%",),
        ).fetchall()
    for (schema,) in rows:
        drop_schema(PostgresUrl(dsn, schema))
    log(f"dropped {len(rows)} schemas {prefix}_*")


def pg_reachable(dsn: str) -> str | None:
    """None if PostgreSQL answers at `dsn`, else why not."""
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def main() -> int:
    args = parse_args()
    wrk = require_wrk()
    dsn = os.environ.get(PG_DSN_ENV, DEFAULT_PG_DSN)
    clean_domicile_env()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "postgres"}
    if unknown:
        raise SystemExit(f"error: unknown backend(s) {sorted(unknown)}")
    before = machine_info()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with workdir(args.keep, args.dir) as work:
        for backend in backends:
            if backend == "postgres" and (why := pg_reachable(dsn)) is not None:
                skipped[backend] = f"postgresql at {PG_DSN_ENV} unreachable: {why}"
                log(f"skipping postgres: {skipped[backend]}")
                continue
            log(f"--- {backend}")
            results[backend] = bench_backend(backend, work, args, wrk, dsn)
    report = {
        "benchmark": "registration",
        "settings": {
            "wrk": f"{wrk_version(wrk)}: -t{args.threads} -c{args.connections} --latency",
            "http_seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "subjects_per_round": args.subjects,
            "batch": args.batch,
            "http_countries": list(HTTP_COUNTRIES),
            "uvicorn": {"loop": args.loop, "http": args.http, "workers": 1},
        },
        "machine": {"before": before, "after": machine_info()},
        "backends": results,
        "skipped": skipped,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, args)
    return 1 if any(r["problems"] for r in results.values()) else 0


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"registration: subjects/s, median of {args.rounds} rounds, paths alternating;"
        f" http: {report['settings']['wrk']}, {args.seconds:g} s per round;"
        f" batch/raw: {args.subjects} subjects per round, {args.batch} per batch"
    )
    print(
        f"machine: {report['machine']['before']['cpus']} cpus, load"
        f" {report['machine']['before']['loadavg']} -> {report['machine']['after']['loadavg']}"
    )
    rows = []
    for backend, res in report["backends"].items():
        for path in PATHS:
            per_round = " ".join(fmt(r["per_s"]) for r in res["rounds"][path])
            rows.append(
                [
                    f"{backend}  {LABELS[path]}",
                    fmt(res["median_per_s"][path]),
                    f"{res['ratio_to_raw'][path]:.3f}",
                    f"{res['ratio_to_raw1'][path]:.2f}",
                    per_round,
                ]
            )
    print()
    print(table(["", "subjects/s", "vs raw 500/tx", "vs raw 1/tx", "per round"], rows))
    for backend, res in report["backends"].items():
        lat = res["http_latency_ms"]
        kept = res["stored_per_region"]
        print(
            f"{backend}: http p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms;"
            f" stored per region: http {kept['http']}, batch {kept['batch']}"
        )
        for problem in res["problems"]:
            print(f"PROBLEM: {problem}")
    for backend, why in report["skipped"].items():
        print(f"{backend}: skipped ({why})")
    print("(figures from one run on a shared machine; ratios are the comparable part)")


if __name__ == "__main__":
    sys.exit(main())
