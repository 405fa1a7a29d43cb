"""Console page loads on a big region: 1M ledger entries and 100k subjects by default.

Builds, in a temporary data directory: `--subjects` people registered with
`gateway.register_many` (batches of 1,000, every region), then decision entries
appended to the eu-ie log (`RegionLog.append`, 10,000 a transaction) until it holds
`--entries`. The entries are shaped like the gateway's own (principals, purposes,
fields, allow/deny, policy ids; one in ten a cross-border read with a source country).

Then it measures each console page, `--rounds` loads each, median reported:
- server side: the view function and the template render, in process;
- over HTTP: a real uvicorn on 127.0.0.1 with a logged-in session cookie (httpx).
One-time costs are reported apart: the decision index's first build over the whole
log (later requests index only what was appended since), and the residency check
(every vault id against the directory; the overview caches it for 30 s).
Baselines from the same run: `GET /healthz` and the API's
`GET /v1/regions/eu-ie/log/entries?count=50`.

    .venv/bin/python bench/console.py [--entries 1000000] [--subjects 100000] [--rounds 7]
        [--json] [--keep] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from benchlib import clean_domicile_env, fmt, free_port, log, machine_info, median, table, workdir
from domicile.api.app import create_app
from domicile.console import views
from domicile.console.index import DecisionIndex, Filters
from domicile.console.render import flow_diagram, region_diagram, render
from domicile.demo import demo_people
from domicile.ledger.entry import encode_entry
from domicile.runtime import Runtime, open_runtime
from domicile.settings import Settings

REGION = "eu-ie"
PRINCIPALS = [("svc-eu", "IE", ["service"]), ("svc-us", "US", ["service"]),
              ("analyst-ie", "IE", ["analyst"]), ("officer-ie", "IE", ["officer"])]  # fmt: skip
PURPOSES = ["service", "support", "safety", "security", "analytics"]
FIELD_SETS = [["email"], ["display_name"], ["email", "phone"], ["follower_count"],
              ["full_name", "birth_date"], ["display_name", "follower_count"]]  # fmt: skip
POLICIES = [["service-in-jurisdiction"], ["security-grant-in-region"], []]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="eu-ie log size")
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7, help="loads per page (median)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--dir", type=Path, default=None, help="where to make it")
    return parser.parse_args(argv)


def decision(rng: random.Random, i: int, when: datetime) -> bytes:
    """One decision entry shaped like the gateway's (no personal data, like the real ones)."""
    pid, country, roles = PRINCIPALS[i % len(PRINCIPALS)]
    fields = FIELD_SETS[rng.randrange(len(FIELD_SETS))]
    allow = rng.random() < 0.8
    context: dict[str, Any] = {"purpose": PURPOSES[i % len(PURPOSES)], "break_glass": False,
                               "grant": None, "source_country": None}  # fmt: skip
    if i % 10 == 0:  # a cross-border read
        context.update(source_country=rng.choice(["US", "SG", "JP", "BR"]),
                       transfer_agreement="eu-us-analytics" if allow else None,
                       transfer_agreement_version=1 if allow else None)  # fmt: skip
    return encode_entry(
        "decision",
        REGION,
        when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        {
            "decision_id": f"{i:032x}",
            "action": "read",
            "result": "allow" if allow else "deny",
            "reason": "",
            "policy_hash": "0" * 64,
            "policy_ids": POLICIES[i % len(POLICIES)] if allow else [],
            "errors": [],
            "input": {
                "principal": {"id": pid, "entity": "bench", "country": country, "roles": roles},
                "resource": {"region": REGION, "subject_ref": f"{i:064x}", "fields": fields},
                "context": context,
            },
            "allowed_fields": fields if allow else [],
            "withheld": {},
        },
    )


def build(runtime: Runtime, subjects: int, entries: int) -> dict[str, float]:
    """Register the subjects, then fill the eu-ie log; return the seconds each took."""
    principal = runtime.principals.get("svc-bench")
    t0 = time.perf_counter()
    people = demo_people(subjects, seed=7)
    batch: list[tuple[str, dict[str, Any]]] = []
    done = 0
    for person in people:
        batch.append(person)
        if len(batch) == 1000:
            runtime.gateway.register_many(principal, batch)
            done += len(batch)
            batch = []
            if done % 20_000 == 0:
                log(f"  registered {done:,}")
    if batch:
        runtime.gateway.register_many(principal, batch)
    registered = time.perf_counter() - t0
    log_ = runtime.logs[REGION]
    rng = random.Random(11)
    start = datetime.now(UTC) - timedelta(days=60)
    t1 = time.perf_counter()
    step = 60 * 86400 / max(entries, 1)
    while log_.size < entries:
        n = min(10_000, entries - log_.size)
        base = log_.size
        log_.append(
            [
                decision(rng, base + k, start + timedelta(seconds=(base + k) * step))
                for k in range(n)
            ]
        )
        if log_.size % 200_000 < 10_000:
            log(f"  log at {log_.size:,}")
    log_.sign_checkpoint()
    return {"register_s": registered, "append_s": time.perf_counter() - t1}


def timed_median(fn: Callable[[], object], rounds: int) -> float:
    """Median milliseconds of `rounds` calls."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return median(samples)


def server_side(console: views.Console, rounds: int) -> dict[str, float]:
    """Each page's view and render, in process (median ms)."""
    admin = console.runtime.principals.get("admin-bench")
    page = {"principal": admin, "csrf": "x", "nav": (), "current": ""}
    today = datetime.now(UTC).date()
    first = today - timedelta(days=29)
    size = console.runtime.logs[REGION].size
    middle = size // 2

    def overview(fresh: bool = False) -> Callable[[], str]:
        def run() -> str:
            data = views.overview(console, fresh=fresh)
            return render("overview.html", diagram=region_diagram(data["boxes"]), **page, **data)

        return run

    def flows() -> str:
        data = views.flows(console, first, today)
        return render("flows.html", diagram=flow_diagram(data["flows"]), error="",
                      start=first.isoformat(), end=today.isoformat(), **page, **data)  # fmt: skip

    def access(filters: Filters, before: int | None = None) -> Callable[[], str]:
        def run() -> str:
            rows, nxt, notice = views.access(console, REGION, filters, before)
            return render("access.html", regions=[REGION], region=REGION, filters=filters,
                          rows=rows, next=nxt, error="", size=size, notice=notice,
                          **page)  # fmt: skip

        return run

    def proof() -> str:
        return render("proof.html", **page, **views.proof(console, REGION, middle))

    def grants() -> str:
        return render("grants.html", done="", **page, **views.grants(console, admin))

    def migration() -> str:
        return render("migration.html", **page, **views.migration(console))

    cases: dict[str, Callable[[], object]] = {
        "overview (residency cached)": overview(),
        "overview ?recheck=true (residency redone)": overview(fresh=True),
        "flows (30 days)": flows,
        "access (newest page)": access(Filters()),
        "access (page at the middle)": access(Filters(), middle),
        "access ?principal=svc-us": access(Filters(principal="svc-us")),
        "access ?category=restricted&result=deny": access(
            Filters(category="restricted", result="deny")
        ),
        "access ?policy=security-grant-in-region": access(
            Filters(policy_id="security-grant-in-region")
        ),
        "access ?principal=nobody (no match)": access(Filters(principal="nobody")),
        "proof (entry at the middle)": proof,
        "grants": grants,
        "migration": migration,
    }
    return {name: timed_median(fn, rounds) for name, fn in cases.items()}


URLS = {
    "overview (residency cached)": "/console/overview",
    "overview ?recheck=true (residency redone)": "/console/overview?recheck=true",
    "flows (30 days)": "/console/flows",
    "access (newest page)": f"/console/access?region={REGION}",
    "access ?principal=svc-us": f"/console/access?region={REGION}&principal=svc-us",
    "access ?category=restricted&result=deny": (
        f"/console/access?region={REGION}&category=restricted&result=deny"
    ),
    "access ?policy=security-grant-in-region": (
        f"/console/access?region={REGION}&policy=security-grant-in-region"
    ),
    "grants": "/console/grants",
    "migration": "/console/migration",
    "baseline: GET /healthz": "/healthz",
    "baseline: API log entries count=50": f"/v1/regions/{REGION}/log/entries?count=50",
}


def over_http(base: str, token: str, size: int, rounds: int) -> dict[str, float]:
    """Each page over HTTP with a session cookie (median ms), and the baselines."""
    urls = {**URLS, "proof (entry at the middle)": f"/console/access/{REGION}/{size // 2}"}
    with httpx.Client(base_url=base, timeout=120) as client:
        form = client.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        client.post("/console/login", data={"csrf": csrf.group(1), "token": token})
        out = {}
        for name, url in urls.items():
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code}")
            out[name] = timed_median(lambda u=url: client.get(u), rounds)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Build, measure, print."""
    args = parse_args(argv)
    clean_domicile_env()
    with workdir(args.keep, args.dir) as work:
        settings = Settings(data_dir=work / "data", checkpoint_interval=5.0)
        runtime = open_runtime(settings)
        try:
            runtime.principals.add("svc-bench", "Bench EU Ltd", "IE", {"service"})
            token = runtime.principals.add("admin-bench", "operator", "IE", {"admin"})
            log(f"building {args.subjects:,} subjects and a {args.entries:,}-entry {REGION} log")
            built = build(runtime, args.subjects, args.entries)
            console = views.Console(runtime)
            t0 = time.perf_counter()
            DecisionIndex(runtime.logs[REGION], runtime.catalog).catch_up()  # the first build
            index_s = time.perf_counter() - t0
            for region in runtime.topology.regions:
                console.index(region)
            t0 = time.perf_counter()
            residency = views.check_residency(runtime)
            residency_s = time.perf_counter() - t0
            log("measuring in process")
            inproc = server_side(console, args.rounds)
            app = create_app(settings, runtime)
            app.state.console = console  # the same indexes: built once above
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            log("measuring over HTTP")
            http = over_http(f"http://127.0.0.1:{port}", token, runtime.logs[REGION].size,
                             args.rounds)  # fmt: skip
            server.should_exit = True
            thread.join(timeout=10)
        finally:
            runtime.close()
    result = {
        "entries": args.entries,
        "subjects": args.subjects,
        "rounds": args.rounds,
        "build": built,
        "index_first_build_s": index_s,
        "residency_check_s": residency_s,
        "residency_outside": residency.outside,
        "server_side_ms": inproc,
        "http_ms": http,
        "machine": machine_info(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    names = list(dict.fromkeys([*inproc, *http]))
    rows = [[n, fmt(inproc[n], 1) if n in inproc else "", fmt(http[n], 1) if n in http else ""]
            for n in names]  # fmt: skip
    print(f"console pages: {args.entries:,} entries in {REGION}, {args.subjects:,} subjects, "
          f"median of {args.rounds} loads")  # fmt: skip
    print(table(["page", "server-side ms", "HTTP ms"], rows))
    print(f"setup: registered in {built['register_s']:.1f} s, log filled in "
          f"{built['append_s']:.1f} s; decision index first build {index_s:.1f} s "
          f"(then incremental); residency check of every id {residency_s * 1000:.0f} ms "
          f"(outside home: {residency.outside})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
