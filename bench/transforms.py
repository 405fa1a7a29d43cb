"""Throughput of the privacy-enhancing transforms, in fields per second.

Each transform runs over the same generated values as its baseline, in alternating
rounds (transform, baseline, baseline, transform, …), and the median of the rounds is
reported. Baselines, measured in the same run:

* `sha256`: ``hashlib.sha256`` over the canonical JSON of each value — the cost of the
  cheapest possible (and unsafe: unkeyed) digest of the same bytes;
* `aesgcm`: AES-256-GCM encryption of the same bytes with a fixed nonce (benchmark only).

    .venv/bin/python bench/transforms.py [--fields 20000] [--rounds 5] [--json]

Nothing here asserts a timing (DESIGN.md, "Benchmarks are not tests").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domicile.catalog.catalog import JsonValue
from domicile.pets import LocalPetKeys, apply_transform, check_k_anonymity
from domicile.pets.keyed import canonical_value

KEYS = LocalPetKeys("eu-ie", os.urandom(32))


def values_for(field_type: str, count: int, rng: random.Random) -> list[JsonValue]:
    """Normalised values of a catalog type, as the vault would hold them."""
    makers: dict[str, Callable[[], JsonValue]] = {
        "email": lambda: f"user{rng.randrange(10**9)}@example{rng.randrange(100)}.com",
        "date": lambda: (
            f"{rng.randrange(1920, 2010)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        ),
        "ip_address": lambda: ".".join(str(rng.randrange(256)) for _ in range(4)),
        "coordinates": lambda: {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)},
        "phone": lambda: f"+353{rng.randrange(10**8, 10**9)}",
        "text": lambda: "x" * 200,
    }
    return [makers[field_type]() for _ in range(count)]


CASES: Sequence[tuple[str, str, str]] = (
    ("pseudonymise", "email", "pseudonymise"),
    ("tokenise", "email", "tokenise"),
    ("generalise:year", "date", "generalise:year"),
    ("generalise:prefix", "ip_address", "generalise:prefix"),
    ("generalise:prefix (phone)", "phone", "generalise:prefix"),
    ("generalise:country (grid)", "coordinates", "generalise:country"),
    ("suppress", "text", "suppress"),
)


def run_transform(transform: str, field_type: str, values: list[JsonValue]) -> float:
    """Seconds to transform every value."""
    start = time.perf_counter()
    for value in values:
        apply_transform(transform, field_type, value, KEYS, field="f", domain="bench")
    return time.perf_counter() - start


def run_baseline(name: str, payloads: list[bytes]) -> float:
    """Seconds to hash or encrypt every payload."""
    aead = AESGCM(os.urandom(32))
    nonce = bytes(12)
    start = time.perf_counter()
    if name == "sha256":
        for payload in payloads:
            hashlib.sha256(payload).digest()
    else:
        for payload in payloads:
            aead.encrypt(nonce, payload, None)
    return time.perf_counter() - start


def measure(fields: int, rounds: int) -> list[dict[str, object]]:
    """Median fields/s of every transform and of both baselines over the same values."""
    rng = random.Random(5)
    results: list[dict[str, object]] = []
    for label, field_type, transform in CASES:
        values = values_for(field_type, fields, rng)
        payloads = [canonical_value("f", v) for v in values]
        times: dict[str, list[float]] = {"transform": [], "sha256": [], "aesgcm": []}
        for n in range(rounds):
            order = ["transform", "sha256", "aesgcm"]
            for side in order if n % 2 == 0 else reversed(order):
                if side == "transform":
                    times[side].append(run_transform(transform, field_type, values))
                else:
                    times[side].append(run_baseline(side, payloads))
        rate = {side: fields / statistics.median(t) for side, t in times.items()}
        results.append(
            {
                "transform": label, "type": field_type, "fields_per_s": round(rate["transform"]),
                "sha256_per_s": round(rate["sha256"]), "aesgcm_per_s": round(rate["aesgcm"]),
                "vs_sha256": round(rate["transform"] / rate["sha256"], 3),
                "vs_aesgcm": round(rate["transform"] / rate["aesgcm"], 3),
            }
        )  # fmt: skip
        print(f"measured {label}", file=sys.stderr, flush=True)
    return results


def measure_kanon(fields: int, rounds: int) -> dict[str, object]:
    """Rows/s of the k-anonymity checker over (birth year, country) pairs."""
    rng = random.Random(7)
    rows = [(rng.randrange(1920, 2010), rng.choice("ABCDEFGH")) for _ in range(fields)]
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        check_k_anonymity(rows, 5)
        runs.append(time.perf_counter() - start)
    return {
        "transform": "k-anonymity check (2 QIs)",
        "rows_per_s": round(fields / statistics.median(runs)),
    }


def main() -> int:
    """Run the benchmark and print a table, or JSON with `--json`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=20_000, help="values per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = measure(args.fields, args.rounds)
    kanon = measure_kanon(args.fields * 10, args.rounds)
    if args.json:
        print(
            json.dumps(
                {
                    "fields": args.fields,
                    "rounds": args.rounds,
                    "transforms": results,
                    "kanon": kanon,
                },
                indent=2,
            )
        )
        return 0
    header = (
        f"{'transform':28} {'type':12} {'fields/s':>10} {'sha256/s':>10} {'aesgcm/s':>10}"
        f" {'÷sha256':>8} {'÷aesgcm':>8}"
    )
    print(f"fields per round: {args.fields}, rounds: {args.rounds} (medians)")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['transform']!s:28} {r['type']!s:12} {r['fields_per_s']:>10,} "
            f"{r['sha256_per_s']:>10,} {r['aesgcm_per_s']:>10,}"
            f" {r['vs_sha256']:>8} {r['vs_aesgcm']:>8}"
        )
    print(f"{kanon['transform']}: {kanon['rows_per_s']:,} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
