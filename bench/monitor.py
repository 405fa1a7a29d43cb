"""Monitor figures: verification throughput and witness add-checkpoint requests/s.

1. verify   A real gateway (open_runtime) registers one subject and reads it, so its
            eu-ie log holds a gateway-build, catalog-version, policy-version and real
            decisions. The read decision is then copied N times (fresh decision ids,
            same input, so each still replays to the same result) and appended
            straight to the RegionLog in large batches. A fresh monitor then follows
            the log through the gateway's own app (in process: Starlette's TestClient
            is an httpx.Client), fetching C2SP entry bundles, re-hashing them to the
            signed root, decoding, analysing and replaying every decision, and storing
            one fact row per entry: `monitor.run_once()`, entries/s, and how far the
            process's peak RSS rose above its RSS during the round (Linux). The same run also
            times the fetch + re-hash alone (Follower.fetch), and two baselines: the
            bare bundle GETs over the same transport, and raw hashlib SHA-256 of the
            same entry bytes (RFC 9162 leaf hash, no tree).
2. witness  `POST /add-checkpoint` over HTTP to the monitor's own server (stdlib
            ThreadingHTTPServer), each request advancing the witnessed size by a few
            entries with a real consistency proof, one client connection; baseline a
            bare stdlib HTTP server on the same port setup that echoes the body.

Nothing is asserted: figures are medians over rounds (DESIGN.md).

    .venv/bin/python bench/monitor.py [--entries 1000000] [--rounds 3] [--witness 2000] [--json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
from fastapi.testclient import TestClient

import benchlib
from domicile.api.app import create_app
from domicile.ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from domicile.ledger.entry import decode_entry
from domicile.ledger.merkle import CompactRange
from domicile.ledger.note import parse_verifier_key
from domicile.ledger.tiles import TILE_WIDTH
from domicile.monitor.client import LogClient
from domicile.monitor.follow import Follower
from domicile.monitor.server import make_server
from domicile.monitor.service import Monitor, MonitorConfig
from domicile.monitor.witness import Witness, load_or_create_cosigner
from domicile.runtime import build_digest, open_runtime
from domicile.settings import Settings

PERSON = {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana"}


def log(message: str) -> None:
    """Progress to stderr."""
    print(message, file=sys.stderr, flush=True)


def _build(tmp: Path, n: int) -> tuple[Any, TestClient]:
    settings = Settings(data_dir=tmp / "gw", checkpoint_interval=3600)
    runtime = open_runtime(settings)
    token = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    headers = {"Authorization": f"Bearer {token}"}
    api = TestClient(create_app(settings, runtime), raise_server_exceptions=False)
    api.__enter__()
    made = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON}, headers=headers)
    sid = made.json()["id"]
    api.get(f"/v1/subjects/{sid}?fields=email,display_name&purpose=support", headers=headers)
    reg = runtime.logs["eu-ie"]
    entries = [decode_entry(reg.entry(i)) for i in range(reg.size)]
    template = next(e for e in reversed(entries) if e["kind"] == "decision")
    base = json.dumps(template, sort_keys=True, separators=(",", ":"))
    old_id = str(template["decision_id"])
    started = time.perf_counter()
    batch: list[bytes] = []
    for _ in range(n - reg.size):
        batch.append(base.replace(old_id, uuid.uuid4().hex).encode())
        if len(batch) == 50_000:
            reg.append(batch)
            batch = []
    if batch:
        reg.append(batch)
    for region in runtime.logs:
        runtime.logs[region].sign_checkpoint()
    log(f"built a log of {reg.size:,} entries in {time.perf_counter() - started:.1f}s")
    return runtime, api


def _verify(
    tmp: Path, client: LogClient, key: str, builds: set[str], rounds: int
) -> dict[str, Any]:
    note = client.checkpoint("eu-ie")
    verifier = parse_verifier_key(key)
    checkpoint, _ = open_checkpoint(note, [verifier])
    size = checkpoint.size
    bundles = range((size + TILE_WIDTH - 1) // TILE_WIDTH)
    raw = [e for b in bundles for e in client.bundle("eu-ie", b, _width(b, size))]
    out: dict[str, list[float]] = {"monitor": [], "fetch_rehash": [], "bare_get": [], "sha256": []}
    growth: list[int] = []
    for r in range(rounds):
        order = ["monitor", "fetch_rehash", "bare_get", "sha256"]
        for case in order if r % 2 == 0 else reversed(order):
            started = time.perf_counter()
            if case == "monitor":
                before = _reset_peak()
                config = MonitorConfig(tmp / f"mon{r}", [key], builds, sinks=[])
                monitor = Monitor(config, client)
                alerts = monitor.run_once()
                verified = monitor.state.verified(checkpoint.origin)
                found = [(a["kind"], a["message"]) for a in monitor.state.alerts()]
                monitor.close()
                if alerts:
                    log(f"  WARNING: {alerts} alerts on an untampered log: {found}")
                assert verified is not None, "not verified"
                assert verified.size >= size, "not verified to the end"
                size_done = verified.size
                peak = _memory("VmHWM")
                if before is not None and peak is not None:
                    growth.append(peak - before)
            elif case == "fetch_rehash":
                follower = Follower(None, client, verifier)  # type: ignore[arg-type]
                fetched = follower.fetch(CompactRange(), size)
                assert not isinstance(fetched, str), fetched
                assert fetched.frontier is not None
                assert fetched.frontier.root() == checkpoint.root_hash
                size_done = size
            elif case == "bare_get":
                for b in bundles:
                    client.bundle("eu-ie", b, _width(b, size))
                size_done = size
            else:
                for data in raw:
                    hashlib.sha256(b"\x00" + data).digest()
                size_done = size
            rate = size_done / (time.perf_counter() - started)
            out[case].append(rate)
            log(f"  round {r + 1} {case}: {rate:,.0f} entries/s")
    result: dict[str, Any] = {k: statistics.median(v) for k, v in out.items()}
    result["monitor_peak_rss_growth_mb"] = max(growth) / 2**20 if growth else None
    return result


def _memory(field: str) -> int | None:
    """A VmRSS/VmHWM figure of this process in bytes (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> int | None:
    """Reset this process's peak RSS to its current RSS (Linux); return that RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _memory("VmRSS")


def _width(bundle: int, size: int) -> int:
    return min(TILE_WIDTH, size - bundle * TILE_WIDTH)


class _Echo(BaseHTTPRequestHandler):
    """Same protocol as the monitor's server: HTTP/1.0, one request per connection."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def _witness(tmp: Path, runtime: Any, count: int, rounds: int) -> dict[str, Any]:
    reg = runtime.logs["eu-ie"]
    step = max(1, min(7, (reg.size - 1) // (count * rounds)))
    sizes = [1 + i * step for i in range(count * rounds + 1)]
    notes = [sign_checkpoint(Checkpoint(reg.origin, s, reg.root(s)), [reg.signer]) for s in sizes]
    bodies = []
    for i in range(1, len(sizes)):
        proof = reg.consistency_proof(sizes[i - 1], sizes[i])
        hashes = [base64.b64encode(h).decode() for h in proof] if i > 1 else []
        head = "\n".join([f"old {sizes[i - 1] if i > 1 else 0}", *hashes])
        bodies.append((head + "\n\n").encode() + notes[i].encode())
    config = MonitorConfig(tmp / "wit", [reg.signer.verifier().verifier_key], sinks=[])
    monitor = Monitor(config, LogClient("http://127.0.0.1:9"))
    witness = Witness(monitor.state, load_or_create_cosigner(tmp / "wit", "bench/witness"),
                      monitor.verifiers, monitor.emit)  # fmt: skip
    wsrv = make_server("127.0.0.1", 0, monitor.state, witness)
    esrv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    urls = {"witness": _serve(wsrv) + "/add-checkpoint", "echo": _serve(esrv) + "/echo"}
    out: dict[str, list[float]] = {"witness": [], "echo": []}
    with httpx.Client(timeout=30) as http:
        for r in range(rounds):
            chunk = bodies[r * count : (r + 1) * count]
            for case in ("witness", "echo") if r % 2 == 0 else ("echo", "witness"):
                started = time.perf_counter()
                for body in chunk:
                    got = http.post(urls[case], content=body)
                    assert got.status_code == 200, (case, got.status_code, got.text)
                rate = len(chunk) / (time.perf_counter() - started)
                out[case].append(rate)
                log(f"  round {r + 1} {case}: {rate:,.0f} requests/s")
    wsrv.shutdown()
    esrv.shutdown()
    monitor.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    """Run both sections and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--witness", type=int, default=2000, help="requests per round")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--transport",
        choices=["http", "inprocess"],
        default="http",
        help="http: the gateway runs in its own process (as in production); inprocess: "
        "the monitor reads the gateway app through Starlette's TestClient",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as name:
        tmp = Path(name)
        runtime, api = _build(tmp, args.entries)
        builds = {runtime.build}  # and the server's, below: the tree may change meanwhile
        key = runtime.logs["eu-ie"].signer.verifier().verifier_key
        try:
            if args.transport == "inprocess":
                log("verify (gateway app in process):")
                in_process = LogClient(http=cast("httpx.Client", api))
                verify = _verify(tmp, in_process, key, builds, args.rounds)
            log("witness:")
            witness = _witness(tmp, runtime, args.witness, args.rounds)
        finally:
            api.__exit__(None, None, None)
            runtime.close()
        if args.transport == "http":
            log("verify (gateway in its own process, over HTTP):")
            serve = ["domicile", "--data-dir", str(tmp / "gw")]
            builds.add(build_digest())
            with benchlib.server("domicile", serve, workdir=tmp) as srv:
                client = LogClient(srv.base)
                verify = _verify(tmp, client, key, builds, args.rounds)
                client.close()
    result = {"entries": args.entries, "transport": args.transport, "verify_entries_per_s": verify,
              "witness_requests_per_s": witness}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"verification, {args.entries:,} entries (median of {args.rounds}):")
    print(
        f"  monitor round (fetch, re-hash, decode, analyse, replay, store): "
        f"{verify['monitor']:>12,.0f} entries/s"
    )
    print(f"  fetch + re-hash only (Follower.fetch):  {verify['fetch_rehash']:>12,.0f} entries/s")
    print(f"  baseline: bare bundle GETs, same app:   {verify['bare_get']:>12,.0f} entries/s")
    print(f"  baseline: raw SHA-256 leaf hashes:      {verify['sha256']:>12,.0f} entries/s")
    print(f"  monitor / bare GETs: {verify['monitor'] / verify['bare_get']:.2f}")
    growth = verify["monitor_peak_rss_growth_mb"]
    if growth is not None:
        print(f"  monitor round: peak RSS rose by (max of rounds): {growth:>8,.0f} MB")
    print("witness add-checkpoint (one connection):")
    print(f"  POST /add-checkpoint: {witness['witness']:>10,.0f} requests/s")
    print(f"  baseline: bare echo:  {witness['echo']:>10,.0f} requests/s")
    print(f"  witness / echo: {witness['witness'] / witness['echo']:.2f}")


if __name__ == "__main__":
    main()
