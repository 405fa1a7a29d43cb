"""Dataset export (issue 5): records/s and peak RSS of exporting a region's subjects with
five pseudonymised fields, against a raw SELECT of the same rows plus HMAC-SHA256 of the
same five fields in plain Python (the least work an export can do), in the same run.

    .venv/bin/python bench/export.py [--subjects 1000000] [--rounds 3] [--no-http] [--json]
        [--keep --dir DIR] [--reuse DIR/domicile-bench-…]

Setup (not part of any figure) registers the subjects with `register_many` in batches
of --batch; `--keep` leaves the data directory behind and `--reuse` measures again on
one made before (its `ctx.json`), so a 1M-subject data set is built once.

Each measured run is a fresh child process (this script with `--phase`), so its peak RSS
(VmHWM; ru_maxrss, which Linux carries over exec, is kept in the JSON) is its own and not
the setup's. A sampler thread in the child reads VmRSS every 50 ms; the table shows it
at 25/50/75/100 % of the run's time (flat = memory does not grow with the records).
The HTTP path (Client.export_dataset against bench/serve.py) reports the server's VmHWM.
The export runs with --workers worker processes (DOMICILE_EXPORT_WORKERS) and, as a
same-run baseline, with one thread; for both the table gives the CPU time per record of
the gateway's process and of its workers (steadier than rates on a shared machine), and
the workers' peak RSS.
Nothing is asserted.

The five fields are the catalog's `restricted` fields whose transform is `pseudonymise`
(full_name, email, phone, device_id, advertising_id), exported by an in-region service
principal (the policy lets only a service or the region's security staff, in region,
`transfer`). All five are `personal_identifiers` for the bulk thresholds (limit 100,000
distinct subjects per destination country by default), so the run uses a thresholds
file with that limit raised to 2 x --subjects: the counter still checks and counts
every exported subject, as in a real export.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import os
import random
import sqlite3
import sys
import threading
import time
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
    server,
    table,
    workdir,
)

FIELDS = ("advertising_id", "device_id", "email", "full_name", "phone")
ENTITY, COUNTRY, AGREEMENT, HOME = "Analytics Inc", "US", "bench-export", "IE"
_FIRST = ("Aoife", "Lukas", "Chloe", "Mateo", "Giulia", "Sven", "Ingrid", "Maja", "Liam")
_LAST = ("Murphy", "Schmidt", "Dubois", "Garcia", "Rossi", "Jansen", "Nowak", "Hansen")


def person(rng: random.Random, n: int) -> dict[str, str]:
    """Five synthetic restricted fields (nothing real)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "advertising_id": f"{rng.getrandbits(128):032x}",
        "device_id": f"dev-{rng.getrandbits(64):016x}",
        "email": f"{first.lower()}.{n:08d}@example.org",
        "full_name": f"{first} {last}",
        "phone": f"+353{rng.randrange(10**8, 10**9)}",
    }


class Sampler:
    """VmRSS every `interval` s in a thread; quartiles of the run's time at the end."""

    def __init__(self, interval: float = 0.05) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_kib()))
            self._stop.wait(interval)

    def __enter__(self) -> Sampler:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter(), rss_kib()))
        self.end = time.perf_counter()

    def quartiles(self) -> list[int]:
        """RSS (KiB) at 25/50/75/100 % of the elapsed time (the last sample before each)."""
        span = self.end - self.start
        out = []
        for q in (0.25, 0.5, 0.75, 1.0):
            at = self.start + q * span
            before = [kib for t, kib in self.samples if t <= at + 1e-9]
            out.append(before[-1] if before else 0)
        return out


# -- setup ----------------------------------------------------------------------------------


def prepare(work: Path, count: int, batch: int) -> dict[str, Any]:
    """Data dir with `count` Irish subjects, a destination, an agreement, the raw table."""
    from domicile.gateway.transfer import version_events
    from domicile.runtime import open_runtime
    from domicile.settings import Settings
    from domicile.transfers.model import AgreementDraft

    thresholds = work / "thresholds.toml"
    thresholds.write_text(
        f"[limits]\npersonal_identifiers = {max(2 * count, 100_000)}\n[fields]\n"
        + "".join(f'{name} = "personal_identifiers"\n' for name in FIELDS)
    )
    data_dir = work / "data"
    settings = Settings(data_dir=data_dir, thresholds_file=thresholds)
    runtime = open_runtime(settings)
    try:
        runtime.principals.add("bench-admin", "operator", HOME, {"admin"})
        svc = runtime.principals.add("bench-svc", "Bench Ltd", HOME, {"service"})
        desk, gateway = runtime.transfers, runtime.gateway
        dest = desk.destinations.register(ENTITY, COUNTRY, "trusted", by="bench-admin")
        gateway.record(version_events(desk.topology, dest.version_record(), "destination-version"))
        now = datetime.now(UTC)
        draft = AgreementDraft(
            id=AGREEMENT, destination_entity=ENTITY, destination_country=COUNTRY,
            purpose="analytics", legal_basis="SCC-2021/914 module 1", tia_reference="TIA-bench",
            fields=dict.fromkeys(FIELDS, "pseudonymise"),
            valid_from=now - timedelta(days=1), valid_until=now + timedelta(days=365),
        )  # fmt: skip
        agreement = desk.agreements.create(draft, desk.catalog, by="bench-admin")
        gateway.record(
            version_events(desk.topology, agreement.version_record(), "agreement-version")
        )
        principal = gateway.authenticate(svc)
        raw = sqlite3.connect(work / "raw.db")
        raw.execute(
            "CREATE TABLE people (id TEXT PRIMARY KEY, "
            + ", ".join(f"{name} TEXT" for name in FIELDS)
            + ")"
        )
        rng = random.Random(2026)
        region = None
        started = time.perf_counter()
        for at in range(0, count, batch):
            people = [person(rng, n) for n in range(at, min(at + batch, count))]
            placed = gateway.register_many(principal, [(HOME, p) for p in people])
            region = placed[0][1]
            raw.executemany(
                f"INSERT INTO people VALUES (?{', ?' * len(FIELDS)})",
                [
                    (sid, *(p[f] for f in FIELDS))
                    for (sid, _), p in zip(placed, people, strict=True)
                ],
            )
            raw.commit()
            done = at + len(people)
            if done % (batch * 50) == 0 or done == count:
                rate = done / (time.perf_counter() - started)
                log(f"  registered {done:,} ({rate:,.0f}/s)")
        raw.close()
    finally:
        runtime.close()
    return {
        "data_dir": str(data_dir),
        "thresholds": str(thresholds),
        "token": svc,
        "region": region,
        "raw": str(work / "raw.db"),
    }


# -- measured phases (each in its own child process) --------------------------------------


def phase_raw(ctx: dict[str, Any]) -> dict[str, Any]:
    """SELECT every row, HMAC-SHA256 five fields each: the least an export must do."""
    key = os.urandom(32)
    conn = sqlite3.connect(ctx["raw"])
    with Sampler() as sampler:
        n = 0
        for row in conn.execute("SELECT * FROM people"):
            for value in row[1:]:
                hmac.digest(key, str(value).encode(), hashlib.sha256)
            n += 1
    conn.close()
    return {"records": n, "seconds": sampler.end - sampler.start, "rss": sampler.quartiles()}


def _cpu_seconds(who: int) -> float:
    import resource

    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def phase_inprocess(ctx: dict[str, Any]) -> dict[str, Any]:
    """prepare_export (what POST /v1/exports calls) and reading its spool, in process,
    with ctx["workers"] worker processes (0: one thread). Besides the rate it keeps the
    CPU seconds of this process and of its workers, and the workers' peak RSS."""
    import resource

    from domicile.gateway.dataset_export import ExportSpec, prepare_export
    from domicile.runtime import open_runtime
    from domicile.settings import Settings

    settings = Settings(data_dir=Path(ctx["data_dir"]), thresholds_file=Path(ctx["thresholds"]))
    runtime = open_runtime(settings)
    try:
        principal = runtime.gateway.authenticate(ctx["token"])
        spec = ExportSpec(region=ctx["region"], agreement_id=AGREEMENT)
        cpu = _cpu_seconds(resource.RUSAGE_SELF)
        with Sampler() as sampler:
            prepared = prepare_export(
                runtime.gateway, runtime.transfers, principal, spec,
                min_k=settings.export_min_k, page=settings.export_page_size,
                workers=ctx["workers"], spool_dir=ctx["work"],
            )  # fmt: skip
            lines = sum(chunk.count(b"\n") for chunk in prepared.chunks())
        cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu
    finally:
        runtime.close()
    if lines != prepared.records:
        raise SystemExit(f"spool holds {lines} lines, export says {prepared.records}")
    return {
        "records": prepared.records,
        "bytes": prepared.size,
        "seconds": sampler.end - sampler.start,
        "rss": sampler.quartiles(),
        "cpu_main": cpu,
        "cpu_workers": _cpu_seconds(resource.RUSAGE_CHILDREN),
        "workers_peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }


class _Sink(io.RawIOBase):
    """A writable that keeps nothing but a count of newlines."""

    lines = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.lines += bytes(data).count(b"\n")
        return len(data)


def http_run(ctx: dict[str, Any], work: Path) -> dict[str, Any]:
    """Client.export_dataset against a server process; the server's RSS before and after."""
    from domicile.client import Client

    os.environ["DOMICILE_THRESHOLDS_FILE"] = ctx["thresholds"]  # serve.py has no flag for it
    os.environ["DOMICILE_EXPORT_WORKERS"] = str(ctx["workers"])
    try:
        args = ["domicile", "--data-dir", ctx["data_dir"]]
        with server("domicile", args, workdir=work) as srv:
            pid = srv.process.pid
            before = rss_kib("VmRSS", pid)
            sink = _Sink()
            client = Client(srv.base, ctx["token"], timeout=3600.0)
            start = time.perf_counter()
            result = client.export_dataset(sink, region=ctx["region"], agreement=AGREEMENT)
            seconds = time.perf_counter() - start
            hwm, after = rss_kib("VmHWM", pid), rss_kib("VmRSS", pid)
    finally:
        del os.environ["DOMICILE_THRESHOLDS_FILE"]
        del os.environ["DOMICILE_EXPORT_WORKERS"]
    if sink.lines != result["records"]:
        raise SystemExit(f"received {sink.lines} lines, export says {result['records']}")
    return {
        "records": result["records"],
        "seconds": seconds,
        "server_rss_before": before,
        "server_rss_after": after,
        "server_peak": hwm,
    }


def run_phase(phase: str, ctx_json: str) -> None:
    """Entry point of a child: print its result as JSON."""
    ctx = json.loads(ctx_json)
    if phase == "thread":
        ctx["workers"] = 0
    print_child_result(phase_raw(ctx) if phase == "raw" else phase_inprocess(ctx))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5000, help="register_many batch (setup)")
    parser.add_argument("--reuse", type=Path, default=None, help="a kept bench directory")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP path")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--workers", type=int, default=2, help="export worker processes (DOMICILE_EXPORT_WORKERS)"
    )
    parser.add_argument("--phase", choices=["raw", "inprocess", "thread"], help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args.phase, args.ctx)
        return
    clean_domicile_env()
    label = f"in process, {args.workers} workers"
    names = {"raw": "raw", "inprocess": label, "thread": "in process, one thread"}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in [*names.values(), "http"]}
    with workdir(args.keep, args.reuse or args.dir) as work:
        t0 = time.perf_counter()
        if args.reuse is not None:
            ctx = json.loads((args.reuse / "ctx.json").read_text())
            ctx["work"] = str(work)
            if ctx["subjects"] != args.subjects:
                raise SystemExit(f"{args.reuse} holds {ctx['subjects']:,} subjects")
        else:
            log(f"registering {args.subjects:,} subjects (register_many, batches of {args.batch})")
            ctx = {**prepare(work, args.subjects, args.batch), "work": str(work)}
            ctx["subjects"] = args.subjects
            (work / "ctx.json").write_text(json.dumps(ctx))
        ctx["workers"] = args.workers
        setup_s = time.perf_counter() - t0
        for round_no in range(args.rounds):
            order = ["raw", "inprocess", "thread"]
            for phase in order if round_no % 2 == 0 else order[::-1]:
                runs[names[phase]].append(run_child(__file__, "--phase", phase, ctx))
            if not args.no_http:
                runs["http"].append(http_run(ctx, work))
            log(
                f"round {round_no + 1}: "
                + ", ".join(
                    f"{name} {v[-1]['records'] / v[-1]['seconds']:,.0f}/s"
                    for name, v in runs.items()
                    if v
                )
            )
    rates = {
        name: median([r["records"] / r["seconds"] for r in v]) for name, v in runs.items() if v
    }
    # The machine is shared: a ratio taken within each round (same moment, same load) and
    # then the median over rounds is steadier than the ratio of the medians.
    paired = {
        name: median(
            [
                ratio(r["records"] / r["seconds"], raw["records"] / raw["seconds"])
                for r, raw in zip(v, runs["raw"], strict=False)
            ]
        )
        for name, v in runs.items()
        if v
    }
    bad = [name for name, v in runs.items() for r in v if r["records"] != args.subjects]
    summary = {
        "subjects": args.subjects,
        "fields": list(FIELDS),
        "rounds": args.rounds,
        "setup_seconds": setup_s,
        "records_per_s": rates,
        "vs_raw": {name: ratio(rate, rates["raw"]) for name, rate in rates.items()},
        "vs_raw_per_round": paired,
        "runs": runs,
        "record_count_mismatch": bad,
        "machine": machine_info(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows = []
        for name, v in runs.items():
            if not v:
                continue
            last = v[-1]
            if name == "http":
                peak = f"{median([r['server_peak'] for r in v]) / 1024:,.0f} (server)"
                quart = (
                    f"server {last['server_rss_before'] / 1024:,.0f} before,"
                    f" {last['server_rss_after'] / 1024:,.0f} after"
                )
            else:
                peak = f"{median([r['peak_rss'] for r in v]) / 1024:,.0f}"
                if last.get("workers_peak_rss"):
                    peak += f" + {median([r['workers_peak_rss'] for r in v]) / 1024:,.0f} each"
                quart = " / ".join(f"{kib / 1024:,.0f}" for kib in last["rss"])
            cpu = "-"
            if "cpu_main" in last:
                main_us = median([r["cpu_main"] / r["records"] * 1e6 for r in v])
                workers_us = median([r["cpu_workers"] / r["records"] * 1e6 for r in v])
                cpu = f"{main_us:,.0f} + {workers_us:,.0f}"
            rows.append(
                [name, fmt(rates[name]), f"{ratio(rates[name], rates['raw']):.3f}",
                 f"{paired[name]:.3f}", cpu, peak, quart]
            )  # fmt: skip
        header = ["path", "records/s", "vs raw", "vs raw per round",
                  "CPU us/record (gateway + workers)", "peak RSS MiB",
                  "RSS MiB at 25/50/75/100 %"]  # fmt: skip
        print(table(header, rows))
        print(
            f"\n{args.subjects:,} subjects, five pseudonymised fields ({', '.join(FIELDS)}),"
            f" medians of {args.rounds} rounds; setup {setup_s:,.0f} s;"
            f" target >= 50,000 records/s; machine: {machine_info()}"
        )
        if bad:
            print(f"record count mismatch in: {sorted(set(bad))}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
