"""Decision latency and rate: the cache, pre-parsed Cedar handles, and the plain cedarpy
string API, in the same run on the same request (issue 4's figures).

    .venv/bin/python bench/policy.py [--json] [--rounds 3]

Prints p50/p99 latency and decisions/s per path (median over rounds) and the ratios
to the plain string API. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable

import cedarpy

from benchlib import machine_info, table
from domicile.policy.cache import DecisionCache
from domicile.policy.engine import PolicyEngine, _cedar_request, _entities
from domicile.policy.model import (
    CedarRequest,
    DataResource,
    PolicyContext,
    PolicyPrincipal,
    PolicyRequest,
)
from domicile.policy.snapshot import default_policies, default_schema


def measure(call: Callable[[], object], count: int) -> tuple[float, float, float]:
    """(p50 µs, p99 µs, calls/s) of `count` calls after a warm-up."""
    for _ in range(min(count, 500)):
        call()
    gc.disable()
    samples = []
    start = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    gc.enable()
    samples.sort()
    return samples[count // 2] * 1e6, samples[int(count * 0.99)] * 1e6, count / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    engine = PolicyEngine.load()
    cache = DecisionCache(engine)
    principal = PolicyPrincipal(
        "svc-eu", "Shop EU Ltd", "IE", "eea", "eu-ie", frozenset({"service"})
    )
    context = PolicyContext(
        purpose="support", source_country="IE", source_jurisdiction="eea", source_region="eu-ie"
    )
    one = CedarRequest(principal, "read", DataResource("eu-ie", "eea", "restricted"), context)
    fields = {
        "email": "restricted",
        "phone": "restricted",
        "full_name": "restricted",
        "bio": "allowable",
        "display_name": "allowable",
        "username": "public",
    }
    many = PolicyRequest(principal, "read", "eu-ie", "eea", fields, context, "s1")
    entities = str(_entities(engine.snapshot, [one]))
    cedar_request = _cedar_request(one)
    policies, schema = default_policies().text, default_schema().text
    assert cedarpy.is_authorized(cedar_request, policies, entities, schema).allowed

    paths: list[tuple[str, Callable[[], object], int]] = [
        ("cedarpy string API (parses all per call)",
         lambda: cedarpy.is_authorized(cedar_request, policies, entities, schema), 1000),
        ("uncached: pre-parsed handles", lambda: engine.decide(one), 5000),
        ("cached", lambda: cache.decide(one), 100_000),
        ("uncached field-level (3 categories)", lambda: engine.decide_fields(many), 3000),
        ("cached field-level (3 categories, 6 fields)", lambda: cache.decide_fields(many),
         100_000),
    ]  # fmt: skip
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in paths}
    for _ in range(args.rounds):  # rounds alternate the paths so drift hits all alike
        for name, call, count in paths:
            results[name].append(measure(call, count))
    summary = {
        name: {
            "p50_us": statistics.median(r[0] for r in runs),
            "p99_us": statistics.median(r[1] for r in runs),
            "per_second": statistics.median(r[2] for r in runs),
        }
        for name, runs in results.items()
    }
    base = summary[paths[0][0]]["per_second"]
    if args.json:
        print(json.dumps({"machine": machine_info(), "paths": summary}, indent=2))
        return
    rows = [
        [name, f"{s['p50_us']:.1f}", f"{s['p99_us']:.1f}", f"{s['per_second']:,.0f}",
         f"{s['per_second'] / base:,.0f}x"]
        for name, s in summary.items()
    ]  # fmt: skip
    print(table(["decision path", "p50 µs", "p99 µs", "decisions/s", "vs string API"], rows))
    print(f"\nmedians of {args.rounds} rounds; machine: {machine_info()}")


if __name__ == "__main__":
    main()
