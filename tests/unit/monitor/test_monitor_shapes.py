"""Decisions analysed once per shape (shapes.py) find what the full decoder finds.

A real gateway (open_runtime, used only to make entries) records a policy version and
real allowed and denied decisions. Copies of them with fresh decision ids, subjects and
times are analysed twice: with the shape cache, and with a cache that learns nothing
(every entry decoded in full). Alerts and fact rows must be the same, forged copies of a
known shape must each be caught, and the bundle splitter and re-hash must match the
ledger's own.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from domicile.api.app import create_app
from domicile.catalog.catalog import load_catalog
from domicile.errors import EntryNotFound, LedgerError
from domicile.ledger.entry import canonical_json, decode_entry
from domicile.ledger.merkle import CompactRange, leaf_hash
from domicile.ledger.note import Ed25519Signer
from domicile.ledger.tiles import TILE_WIDTH, bundle_path, decode_bundle, encode_bundle
from domicile.monitor.analyze import Analysis, Analyzer
from domicile.monitor.client import LogClient, split_bundle
from domicile.monitor.consistency import Consistency
from domicile.monitor.follow import FetchProblem, Follower, rehash
from domicile.monitor.replay import Replayer
from domicile.monitor.shapes import ShapeCache, split
from domicile.policy.engine import PolicyEngine
from domicile.policy.snapshot import default_policies
from domicile.residency.topology import load_topology
from domicile.runtime import open_runtime
from domicile.settings import Settings

PERSON = {"full_name": "Ana Silva", "email": "ana@example.org", "display_name": "Ana"}


@dataclass
class Log:
    entries: list[bytes]
    allowed: dict[str, Any]
    denied: dict[str, Any]


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    settings = Settings(data_dir=tmp_path_factory.mktemp("shapes") / "gw")
    runtime = open_runtime(settings)
    token = runtime.principals.add("svc-eu", "Shop EU Ltd", "IE", {"service"})
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as api:
        for _ in range(3):
            sid = api.post("/v1/subjects", json={"country": "IE", "fields": PERSON},
                           headers=headers).json()["id"]  # fmt: skip
            for purpose in ("support", "marketing"):
                api.get(f"/v1/subjects/{sid}?fields=email&purpose={purpose}", headers=headers)
        reg = runtime.logs["eu-ie"]
        entries = [reg.entry(i) for i in range(reg.size)]
    runtime.close()
    decoded = [decode_entry(e) for e in entries]
    reads = [e for e in decoded if e["kind"] == "decision" and e["action"] == "read"]
    allowed = next(e for e in reads if e["result"] == "allow")
    denied = next(e for e in reads if e["result"] == "deny")
    return Log(entries, allowed, denied)


def _copy(template: dict[str, Any], n: int, ref: str | None = None, **changes: Any) -> bytes:
    entry = {**template, **changes, "decision_id": f"{n:032x}",
             "time": f"2026-11-23T10:{n // 60 % 60:02d}:{n % 60:02d}.{n % 997:06d}Z"}  # fmt: skip
    resource = {**entry["input"]["resource"], "subject_ref": ref or f"{n * 7919:032x}"}
    entry["input"] = {**entry["input"], "resource": resource}
    return canonical_json(entry)


def _analyse(
    entries: list[bytes], shapes: ShapeCache, replayer: Replayer | None = None
) -> Analysis:
    catalog, topology = load_catalog(), load_topology()
    analyzer = Analyzer(
        "example.org/log/eu-ie", replayer or Replayer(topology, catalog), [], catalog.digest(),
        topology.digest(), Consistency("example.org/log/eu-ie", None), shapes,
    )  # fmt: skip
    out = Analysis()
    for first in range(0, len(entries), 100):
        part = analyzer.run(first, entries[first : first + 100])
        out.alerts += part.alerts
        out.facts += part.facts
        for shape, flat in part.shaped.items():
            out.shaped.setdefault(shape, []).extend(flat)
    return out


def _rows(out: Analysis) -> list[tuple[Any, ...]]:
    rows = list(out.facts)
    for shape, flat in out.shaped.items():
        for i in range(0, len(flat), 4):
            idx, time, decision_id, ref = flat[i : i + 4]
            rows.append(("example.org/log/eu-ie", idx, time, *shape.fact_middle, decision_id,
                         ref, shape.detail))  # fmt: skip
    return sorted(rows, key=lambda r: r[1])


def _alerts(out: Analysis) -> list[tuple[str, int | None, str]]:
    return sorted((a.kind, a.index, a.message) for a in out.alerts)


def _mixed(log: Log) -> list[bytes]:
    erased = "e" * 32
    entries = list(log.entries)
    for n in range(600):
        if n % 5 == 4:
            entries.append(_copy(log.denied, n))
        elif n == 300:  # the erasure cites a decision it lacks: an alert of its own
            erasure = {"v": 1, "kind": "erasure", "region": "eu-ie", "subject_ref": erased,
                       "time": "2026-11-23T10:05:00Z", "decision_id": "x"}  # fmt: skip
            entries.append(canonical_json(erasure))
        else:
            entries.append(_copy(log.allowed, n, ref=erased if n % 50 == 1 else None))
    for n in range(600, 640):  # forged: allows the policy denies, all of one shape
        entries.append(_copy(log.denied, n, result="allow", allowed_fields=["email"]))
    entries.append(_copy(log.allowed, 640, result="deny", allowed_fields=[]))
    return entries


def test_shapes_analyse_like_the_full_decoder(log: Log) -> None:
    entries = _mixed(log)
    shapes = ShapeCache()
    fast = _analyse(entries, shapes)
    full = _analyse(entries, ShapeCache(limit=0))
    assert len(shapes) >= 3  # allowed, denied and the forged shape
    assert sum(len(flat) for flat in fast.shaped.values()) > 4 * 500  # most took the shape
    assert not full.shaped
    assert _rows(fast) == _rows(full)
    assert _alerts(fast) == _alerts(full)
    kinds = {a.kind for a in fast.alerts}
    assert {"allow-against-policy", "deny-against-policy", "access-after-erasure"} <= kinds


def test_every_forged_allow_of_a_known_shape_is_caught(log: Log) -> None:
    forged = [_copy(log.denied, n, result="allow", allowed_fields=["email"]) for n in range(50)]
    out = _analyse(list(log.entries) + forged, ShapeCache())
    caught = {a.index for a in out.alerts if a.kind == "allow-against-policy"}
    assert caught == set(range(len(log.entries), len(log.entries) + 50))


def test_an_entry_that_only_looks_like_its_shape_is_decoded_in_full(log: Log) -> None:
    good = _copy(log.allowed, 1)
    shapes = ShapeCache()
    shapes.learn(good, decode_entry(good))
    assert shapes.lookup(_copy(log.allowed, 2)) is not None
    escaped = good.replace(b'"time":"2026', b'"time":"\\u0032026')
    assert shapes.lookup(escaped) is None  # not plain: the full decoder must judge it
    with pytest.raises(FetchProblem):
        _analyse([*log.entries, good.replace(b'"time":"2026', b'"time":"\x01')], shapes)
    other = good.replace(b'"result":"allow"', b'"result":"deny"')
    assert shapes.lookup(other) is None  # another shape


def _from(template: dict[str, Any], n: int, country: str) -> bytes:
    principal = {**template["input"]["principal"], "country": country}
    return _copy(template, n, **{"input": {**template["input"], "principal": principal}})


def test_shapes_of_equal_piece_lengths_are_told_apart(log: Log) -> None:
    # IE and CN differ in two bytes only: same piece lengths, so both shapes are
    # candidates for each entry, and each must be matched by its own bytes.
    entries = [_from(log.allowed, n, "CN" if n % 3 == 0 else "IE") for n in range(90)]
    shapes = ShapeCache()
    for data in entries[:2]:
        shapes.learn(data, decode_entry(data))
    for data in entries:
        hit = shapes.lookup(data)
        assert hit is not None
        assert (
            hit[0].template["input"]["principal"]["country"]
            == decode_entry(data)["input"]["principal"]["country"]
        )
        assert hit[1] == decode_entry(data)["decision_id"]
    fast = _analyse(list(log.entries) + entries, ShapeCache())
    full = _analyse(list(log.entries) + entries, ShapeCache(limit=0))
    assert _rows(fast) == _rows(full)
    assert _alerts(fast) == _alerts(full)
    caught = {a.index for a in fast.alerts if a.kind == "country-of-concern"}
    assert caught == {len(log.entries) + n for n in range(0, 90, 3)}


def test_a_policy_that_reads_time_replays_each_entry_at_its_own_second(log: Log) -> None:
    # Under this version the read is denied from the epoch's second 2 on: copies of one
    # allowed shape at seconds 1 and 5 in turn are each replayed at their own second.
    timed = default_policies().text + (
        '\n@id("after-hours")\n'
        "forbid (principal, action, resource is Domicile::Data) when { context.time >= 2 };\n"
    )
    replayer = Replayer(load_topology(), load_catalog())
    replayer.engines[str(log.allowed["policy_hash"])] = PolicyEngine.load(timed)
    entries = []
    for n in range(40):
        entry = json.loads(_copy(log.allowed, n))
        entry["time"] = f"1970-01-01T00:00:0{5 if n % 4 == 3 else 1}.{n:06d}Z"
        entries.append(canonical_json(entry))
    out = _analyse(list(log.entries) + entries, ShapeCache(), replayer)
    first = len(log.entries)  # the log's own decisions, made this year, are caught too
    caught = {a.index for a in out.alerts if a.kind == "allow-against-policy" and a.index >= first}
    assert caught == {first + n for n in range(3, 40, 4)}
    assert sum(len(flat) for flat in out.shaped.values()) >= 4 * 29  # the rest took the shape


def test_a_shape_is_learnt_only_where_the_cuts_are_the_three_values(log: Log) -> None:
    tricky = {**log.allowed, "withheld": {"time": "x"}}  # the last "time" is not the entry's
    data = canonical_json(tricky)
    assert split(data) is not None
    shapes = ShapeCache()
    shapes.learn(data, decode_entry(data))
    assert len(shapes) == 0
    assert shapes.lookup(data) is None


def test_split_bundle_matches_the_ledger(log: Log) -> None:
    for width in (1, 7, TILE_WIDTH):
        data = encode_bundle((log.entries * TILE_WIDTH)[:width])
        assert split_bundle(data, width) == decode_bundle(data, width)
        for broken, message in ((data[:-1], "inside an entry"), (data + b"\x00", "length")):
            with pytest.raises(LedgerError, match=message):
                split_bundle(broken, width)
        with pytest.raises(LedgerError, match="expected"):
            split_bundle(data, width + 1)
    with pytest.raises(LedgerError, match="empty"):
        split_bundle(b"", 1)


def test_rehash_matches_the_compact_range() -> None:
    rng = random.Random(6)
    for start in (0, 1, 255, 256, 512, 768, 1000):
        entries = [rng.randbytes(rng.randrange(1, 40)) for _ in range(3 * TILE_WIDTH)]
        expected = CompactRange()
        expected.extend([leaf_hash(b"x%d" % i) for i in range(start)], record=False)
        got = expected.copy()
        expected.extend([leaf_hash(e) for e in entries], record=False)
        offset = 0
        for width in (TILE_WIDTH - start % TILE_WIDTH, TILE_WIDTH, 17, TILE_WIDTH - 17):
            got = rehash(got, entries[offset : offset + width])
            offset += width
        got = rehash(got, entries[offset:])
        assert got.size == expected.size
        assert got.root() == expected.root()


class _Bundles(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = encode_bundle([b"one", b"two"])

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        status, body = (200, self.body) if "/entries/000.p/2" in self.path else (404, b"no")
        if "/entries/001" in self.path:
            status = 503
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_bundles_over_the_standard_library_client(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bundles)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LogClient(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert client._bundles is not None
        for _ in range(3):  # one kept-alive connection, reused
            assert client.bundle("eu-ie", 0, 2) == [b"one", b"two"]
        with pytest.raises(EntryNotFound):
            client.bundle("eu-ie", 0, 3)
        with pytest.raises(LedgerError, match="503"):
            client.bundle("eu-ie", 1, 2)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    with pytest.raises(LedgerError, match="unreachable"):
        LogClient(f"http://127.0.0.1:{server.server_address[1]}").bundle("eu-ie", 0, 2)


class _Log(BaseHTTPRequestHandler):
    """Serves `bodies` by path; drops a kept-alive connection unannounced every `drop`
    answers (as a server's idle timeout does) and never has `missing`."""

    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, bytes]] = {}
    missing = ""
    drop = 0
    answered = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        path = self.path.split("/log/", 1)[-1]
        body = self.bodies.get(path) if path != self.missing else None
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")
        with self.lock:
            type(self).answered += 1
            if self.drop and type(self).answered % self.drop == 0:
                self.close_connection = True  # no `Connection: close`: the client finds out


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # requests left in flight have their connections closed: not news


def _serve_log(
    entries: list[bytes], missing: int | None = None, drop: int = 0, cut: int | None = None
) -> Any:
    bundles = range((len(entries) + TILE_WIDTH - 1) // TILE_WIDTH)
    widths = [min(TILE_WIDTH, len(entries) - b * TILE_WIDTH) for b in bundles]
    handler = type("Handler", (_Log,), {
        "bodies": {bundle_path(b, w): encode_bundle(entries[b * TILE_WIDTH :][:w])
                   for b, w in zip(bundles, widths, strict=True)},
        "missing": bundle_path(missing, TILE_WIDTH) if missing is not None else "",
        "drop": drop,
    })  # fmt: skip
    if cut is not None:  # bundle `cut` is served with its last byte missing
        path = bundle_path(cut, TILE_WIDTH)
        handler.bodies = {**handler.bodies, path: handler.bodies[path][:-1]}
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("drop", [0, 3])
def test_bundles_in_flight_arrive_in_order_and_rehash_to_the_root(drop: int) -> None:
    entries = [b"entry %d" % i for i in range(20 * TILE_WIDTH + 7)]
    server = _serve_log(entries, drop=drop)
    client = LogClient(f"http://127.0.0.1:{server.server_address[1]}")
    signer = Ed25519Signer("example.org/log/eu-ie", bytes(32))
    try:
        got = [
            e for b in client.bundles("eu-ie", [(b, 256) for b in range(20)], ahead=4) for e in b
        ]
        assert got == entries[: 20 * TILE_WIDTH]
        fetched = Follower(None, client, signer.verifier()).fetch(CompactRange(), len(entries))  # type: ignore[arg-type]
        assert not isinstance(fetched, str), fetched
        assert fetched.entries == entries
        expected = CompactRange()
        expected.extend([leaf_hash(e) for e in entries], record=False)
        assert fetched.frontier is not None
        assert fetched.frontier.root() == expected.root()
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_a_missing_bundle_in_flight_is_named_and_a_dead_gateway_is_unavailable() -> None:
    entries = [b"entry %d" % i for i in range(12 * TILE_WIDTH)]
    server = _serve_log(entries, missing=7)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = LogClient(url)
    follower = Follower(None, client, Ed25519Signer("example.org/log/eu-ie", bytes(32)).verifier())  # type: ignore[arg-type]
    try:
        chunks = iter(follower.stream(CompactRange(), len(entries), chunk=TILE_WIDTH))
        seen = [(first, len(chunk)) for first, chunk in itertools.islice(chunks, 7)]
        with pytest.raises(FetchProblem, match=r"entry bundle 7 \(width 256\) is missing"):
            next(chunks)
        assert seen == [(b * TILE_WIDTH, TILE_WIDTH) for b in range(7)]
        assert follower.fetch(CompactRange(), len(entries)) == (
            f"entry bundle 7 (width {TILE_WIDTH}) is missing"
        )
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    problem = follower.fetch(CompactRange(), len(entries))
    assert isinstance(problem, str)
    assert "cannot be read now" in problem


def test_a_malformed_bundle_is_evidence_not_an_unavailable_gateway() -> None:
    """A bundle that is served but does not decode says the gateway answered wrongly:
    the follower names it (FetchProblem, a rewritten log), it does not wait for later."""
    entries = [b"entry %d" % i for i in range(4 * TILE_WIDTH)]
    server = _serve_log(entries, cut=2)
    client = LogClient(f"http://127.0.0.1:{server.server_address[1]}")
    follower = Follower(None, client, Ed25519Signer("example.org/log/eu-ie", bytes(32)).verifier())  # type: ignore[arg-type]
    try:
        chunks = iter(follower.stream(CompactRange(), len(entries), chunk=TILE_WIDTH))
        assert [len(c) for _, c in itertools.islice(chunks, 2)] == [TILE_WIDTH, TILE_WIDTH]
        with pytest.raises(FetchProblem, match=r"bundle 2 does not decode: .*inside an entry"):
            next(chunks)
        problem = follower.fetch(CompactRange(), len(entries))
        assert isinstance(problem, str)
        assert "does not decode" in problem
        assert "cannot be read now" not in problem
    finally:
        client.close()
        server.shutdown()
        server.server_close()
