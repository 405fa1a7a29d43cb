"""Read path: one subject's fields over HTTP through Domicile vs a bare FastAPI endpoint.

Both servers run under the same uvicorn settings (bench/serve.py), on 127.0.0.1, and are
loaded by the same wrk command in the same run, in alternating rounds so that the noise
of a shared machine falls on both. Prints the median of the rounds and the ratio
Domicile / bare, against the targets for the read path with the whole pipeline (a Cedar
decision, a durable ledger append, custody and its unwrap record): at least 60% of bare
throughput and a p99 at most 3x bare's. (The first target, 70%, was set for the read
path before the gateway pipeline existed.) Nothing is asserted: a timing is a figure,
not a test.

    .venv/bin/python bench/read_path.py [--seconds 10] [--rounds 3] [-t 2] [-c 32] [--json]
        [--storage-url "postgresql://…?schema=S"]   (Domicile on PostgreSQL, a fresh schema)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from bare_app import create_db
from benchlib import (
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
from domicile.demo import demo_people
from domicile.runtime import open_runtime
from domicile.settings import Settings

TARGET = 0.60  # Domicile's throughput over bare's, at least
P99_LIMIT = 3.0  # Domicile's p99 over bare's, at most
FIELDS = ("email", "phone")
PERSON = {
    "full_name": "Aoife Murphy",
    "email": "aoife.murphy@example.org",
    "phone": "+353861234567",
    "birth_date": "1988-04-12",
    "ip_address": "192.0.2.17",
    "display_name": "Aoife",
    "follower_count": 412,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of one round (s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up per server (s)")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("-c", "--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--population",
        type=int,
        default=1000,
        help="other subjects/rows stored beside the one read",
    )
    parser.add_argument("--loop", default="auto", help="uvicorn loop, for both servers")
    parser.add_argument("--http", default="auto", help="uvicorn http, for both servers")
    parser.add_argument(
        "--threadpool", type=int, default=None, help="sync-endpoint threads, both servers"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--storage-url",
        default=None,
        help="run Domicile on this store (postgresql://…?schema=S, a fresh schema); the bare"
        " endpoint stays on SQLite",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to make the temporary directory"
    )
    return parser.parse_args()


def prepare(
    work: Path, population: int, storage_url: str | None = None
) -> tuple[str, str, dict[str, Any], Path, Path]:
    """Register the subject in Domicile (on `storage_url`, SQLite files when None) and the
    same row in the bare table.

    Returns (subject id, token, expected fields, Domicile data dir, bare db path).
    """
    data_dir = work / "data"
    runtime = open_runtime(Settings(data_dir=data_dir, storage_url=storage_url))
    try:
        token = runtime.principals.add("bench-svc", "Bench Ltd", "IE", {"service"})
        principal = runtime.principals.authenticate(token)
        others = list(demo_people(population, seed=7))
        for start in range(0, len(others), 500):
            runtime.gateway.register_many(principal, others[start : start + 500])
        subject_id, region = runtime.gateway.register(principal, "IE", PERSON)
        # What Domicile hands back (normalised), so the bare row holds the same values.
        expected = runtime.gateway.read(principal, subject_id, list(FIELDS), "support").fields
    finally:
        runtime.close()
    log(f"registered subject {subject_id} in {region} (+{population} others)")

    bare_db = work / "bare.db"
    rng = random.Random(7)
    rows = [(subject_id, {**PERSON, **expected})]
    rows += [(f"{rng.getrandbits(128):032x}", values) for _, values in others]
    create_db(bare_db, rows)
    return subject_id, token, expected, data_dir, bare_db


def check(name: str, url: str, headers: dict[str, str], expected: dict[str, Any]) -> None:
    """Both endpoints must answer 200 with the expected values before anything is timed."""
    status, body = http_json("GET", url, headers=headers)
    got = body.get("fields") if isinstance(body, dict) else None
    if status != 200 or got != expected:
        raise SystemExit(f"error: {name} answered {status} {body!r}, expected 200 with {expected}")
    log(f"{name}: 200, fields {sorted(got)} as expected")


def main() -> int:
    args = parse_args()
    wrk = require_wrk()
    clean_domicile_env()
    before = machine_info()
    results: dict[str, list[dict[str, Any]]] = {"domicile": [], "bare": []}
    problems: list[str] = []

    with workdir(args.keep, args.dir) as work:
        subject_id, token, expected, data_dir, bare_db = prepare(
            work, args.population, args.storage_url
        )
        storage = ["--storage-url", args.storage_url] if args.storage_url else []
        uv = ["--loop", args.loop, "--http", args.http]
        if args.threadpool is not None:
            uv += ["--threadpool", str(args.threadpool)]
        with (
            server(
                "domicile", ["domicile", "--data-dir", str(data_dir), *storage, *uv], workdir=work
            ) as dom,
            server("bare", ["bare", "--db", str(bare_db), *uv], workdir=work) as bare,
        ):
            targets = {
                "domicile": (
                    f"{dom.base}/v1/subjects/{subject_id}?fields={','.join(FIELDS)}&purpose=support",
                    {"Authorization": f"Bearer {token}"},
                ),
                "bare": (f"{bare.base}/bare/{subject_id}", {}),
            }
            for name, (url, headers) in targets.items():
                check(name, url, headers, expected)

            def load(name: str, seconds: float) -> Any:
                url, headers = targets[name]
                return run_wrk(
                    wrk,
                    url,
                    threads=args.threads,
                    connections=args.connections,
                    seconds=seconds,
                    headers=headers,
                )

            for name in targets:
                warm = load(name, args.warmup)
                log(f"warm-up {name}: {warm.rps:,.0f} req/s")
            for round_no in range(args.rounds):
                order = ["domicile", "bare"] if round_no % 2 == 0 else ["bare", "domicile"]
                for name in order:
                    res = load(name, args.seconds)
                    results[name].append(res.as_dict())
                    log(
                        f"round {round_no + 1}/{args.rounds} {name:8s} {res.rps:9,.0f} req/s"
                        f"  p50 {res.p50_ms:.2f} ms  p99 {res.p99_ms:.2f} ms"
                    )
                    if not res.clean:
                        problems.append(
                            f"{name} round {round_no + 1}: {res.non_2xx} non-2xx responses,"
                            f" socket errors {res.socket_errors}"
                        )
            for srv in (dom, bare):
                if srv.process.poll() is not None:
                    problems.append(f"{srv.name} server died:\n{srv.log_tail()}")

    summary = {
        name: {
            "rps": median([r["rps"] for r in runs]),
            "p50_ms": median([r["p50_ms"] for r in runs]),
            "p99_ms": median([r["p99_ms"] for r in runs]),
        }
        for name, runs in results.items()
    }
    paired = [
        ratio(d["rps"], b["rps"]) for d, b in zip(results["domicile"], results["bare"], strict=True)
    ]
    rps_ratio = ratio(summary["domicile"]["rps"], summary["bare"]["rps"])
    report = {
        "benchmark": "read_path",
        "settings": {
            "wrk": f"{wrk_version(wrk)}: -t{args.threads} -c{args.connections} --latency",
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "uvicorn": {"loop": args.loop, "http": args.http, "workers": 1},
            "threadpool": args.threadpool or "anyio default (40)",
            "fields": list(FIELDS),
        },
        "machine": {"before": before, "after": machine_info()},
        "rounds": results,
        "median": summary,
        "ratio": {
            "throughput": rps_ratio,
            "throughput_per_round": paired,
            "p50": ratio(summary["domicile"]["p50_ms"], summary["bare"]["p50_ms"]),
            "p99": ratio(summary["domicile"]["p99_ms"], summary["bare"]["p99_ms"]),
            "target_throughput": TARGET,
            "target_p99_at_most": P99_LIMIT,
        },
        "problems": problems,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report, args)
    return 1 if problems else 0


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    s, r = report["median"], report["ratio"]
    print(
        f"read path: GET one subject's {','.join(FIELDS)} — {report['settings']['wrk']},"
        f" {args.rounds} rounds x {args.seconds:g} s, alternating"
    )
    print(
        f"machine: {report['machine']['before']['cpus']} cpus, load"
        f" {report['machine']['before']['loadavg']} -> {report['machine']['after']['loadavg']}"
    )
    rows = [
        [
            name,
            fmt(s[name]["rps"]),
            fmt(s[name]["p50_ms"], 2),
            fmt(s[name]["p99_ms"], 2),
            " ".join(fmt(x["rps"]) for x in report["rounds"][name]),
        ]
        for name in ("domicile", "bare")
    ]
    rows.append(
        [
            "domicile / bare",
            f"{r['throughput']:.2f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            " ".join(f"{x:.2f}" for x in r["throughput_per_round"]),
        ]
    )
    print()
    print(table(["", "req/s (median)", "p50 ms", "p99 ms", "req/s per round"], rows))
    print()
    verdict = "meets" if r["throughput"] >= TARGET else "is below"
    tail = "meets" if r["p99"] <= P99_LIMIT else "is above"
    print(
        f"Domicile serves {r['throughput']:.0%} of bare throughput; {verdict} the"
        f" {TARGET:.0%} target. Its p99 is {r['p99']:.2f}x bare's; {tail} the"
        f" {P99_LIMIT:g}x limit (figures from one run on a shared machine, not a test)."
    )
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")


if __name__ == "__main__":
    sys.exit(main())
