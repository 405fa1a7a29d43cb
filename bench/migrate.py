"""Relocating N legacy rows end to end vs a raw copy of the same rows, in the same run.

    python bench/migrate.py [--rows 1000000] [--small 200000] [--batch-size 10000]
                            [--repeat 3] [--inline] [--preparers N] [--json]

For each size (`--small`, then `--rows`; `--small 0` skips the first) a demo legacy
store (`domicile migrate demo-source`, SQLite) is relocated into the embedded default
(SQLite regions) by `run_migration` in a fresh interpreter, so its peak memory is its
own: the writer's VmHWM and, sampled while it runs, the preparing processes' (summed),
and each side's CPU time per row (start-up included). Then the same rows are copied raw
from a pristine copy of the legacy file into the same destination database (the `eu-ie`
vault file), `--repeat` times each (medians):

- `INSERT … SELECT` from the attached legacy file: SQLite copying pages in C, no Python
  per row — the upper bound of any copy between these two files;
- read a page, `executemany` it into the destination, commit, per `--batch-size` rows:
  what a Python program moving rows unchanged costs.

The relocation does much more per row than either (validate, seal 7 values, a vault
row, a wrapped key, directory and progress rows, a read-back, a source delete), so
both ratios are printed and named. The machine is shared: read the ratios, and the
load average printed with them. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import log, machine_info, median, ratio

CHILD = """
import json, os, resource, sys, threading, time
from pathlib import Path
from domicile.catalog.catalog import load_catalog
from domicile.migrate.mapping import load_mapping
from domicile.migrate.service import run_migration
from domicile.migrate.source import LegacySource
from domicile.settings import Settings

def hwm(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0

children_peaks = {}
def watch(stop):
    me = os.getpid()
    while not stop.wait(0.1):
        for task in os.listdir(f"/proc/{me}/task"):
            try:
                kids = Path(f"/proc/{me}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:  # multiprocessing's resource tracker is no preparer
                    if b"resource_tracker" in Path(f"/proc/{kid}/cmdline").read_bytes():
                        continue
                except OSError:
                    continue
                children_peaks[kid] = max(children_peaks.get(kid, 0), hwm(kid))

def main():
    data_dir, url, mapping, batch, inline, preparers = sys.argv[1:7]
    settings = Settings(data_dir=Path(data_dir))
    source = LegacySource(url, load_mapping(Path(mapping), load_catalog()))
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    started = time.perf_counter()
    report, _ = run_migration(settings, source, batch_size=int(batch),
                              preparing_process=inline != "inline",
                              preparers=int(preparers) or None)
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the preparers, joined by now
    print(json.dumps({"seconds": seconds, "moved": report.moved,
                      "quarantined": report.quarantined, "writer_peak_kib": hwm("self"),
                      "preparer_peak_kib": sum(children_peaks.values()),
                      "preparers": len(children_peaks),
                      "writer_cpu_s": me.ru_utime + me.ru_stime,
                      "preparer_cpu_s": kids.ru_utime + kids.ru_stime}))

if __name__ == "__main__":
    main()
"""


def _connect(path: Path) -> sqlite3.Connection:
    # The destination's own settings (storage.database): WAL, synchronous=FULL.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def raw_insert_select(source: Path, dest: Path, table: str) -> float:
    """INSERT … SELECT from the attached source into a new table of the destination."""
    conn = _connect(dest)
    conn.execute("ATTACH DATABASE ? AS legacy", (str(source),))
    conn.execute("DROP TABLE IF EXISTS raw_copy")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute(f"CREATE TABLE raw_copy AS SELECT * FROM legacy.{table} WHERE 0")
    conn.execute(f"INSERT INTO raw_copy SELECT * FROM legacy.{table}")
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE raw_copy")
    conn.close()
    return seconds


def raw_executemany(source: Path, dest: Path, table: str, batch: int) -> float:
    """Read pages from the source and executemany them into the destination."""
    src, dst = sqlite3.connect(source), _connect(dest)
    columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    dst.execute("DROP TABLE IF EXISTS raw_many")
    dst.execute(f"CREATE TABLE raw_many ({', '.join(columns)})")
    marks = ", ".join("?" for _ in columns)
    started, after = time.perf_counter(), 0
    while True:
        rows = src.execute(
            f"SELECT * FROM {table} WHERE legacy_id > ? ORDER BY legacy_id LIMIT ?",
            (after, batch),
        ).fetchall()
        if not rows:
            break
        dst.execute("BEGIN")
        dst.executemany(f"INSERT INTO raw_many VALUES ({marks})", rows)
        dst.execute("COMMIT")
        after = rows[-1][0]
    seconds = time.perf_counter() - started
    dst.execute("DROP TABLE raw_many")
    src.close()
    dst.close()
    return seconds


def measure(
    rows: int, root: Path, batch: int, repeat: int, inline: bool, preparers: int
) -> dict[str, Any]:
    """One size: generate, relocate, then the raw copies; figures as a dict."""
    from domicile.migrate.demo_source import create_demo_source

    legacy, mapping = root / "legacy.db", root / "mapping.toml"
    log(f"[{rows}] generating legacy rows")
    mapping.write_text(create_demo_source(f"sqlite:///{legacy}", rows, "singapore"))
    shutil.copy(legacy, root / "legacy-raw.db")
    data_dir = root / "data"
    log(f"[{rows}] relocating ({'in one process' if inline else 'with a preparing process'})")
    load_before = machine_info()["loadavg"]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), f"sqlite:///{legacy}", str(mapping),
         str(batch), "inline" if inline else "process", str(preparers)],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    if child.returncode != 0:
        raise SystemExit(f"relocation failed:\n{child.stderr[-3000:]}")
    moved = json.loads(child.stdout.splitlines()[-1])
    dest = data_dir / "regions" / "eu-ie" / "vault.db"
    raw = root / "legacy-raw.db"
    selects, manys = [], []
    for round_no in range(repeat):
        log(f"[{rows}] raw copies, round {round_no + 1}/{repeat}")
        selects.append(raw_insert_select(raw, dest, "users_sg"))
        manys.append(raw_executemany(raw, dest, "users_sg", batch))
    migrate_rate = rows / moved["seconds"]
    select_rate, many_rate = rows / median(selects), rows / median(manys)
    peak = moved["writer_peak_kib"] + moved["preparer_peak_kib"]
    return {
        "rows": rows,
        "moved": moved["moved"],
        "quarantined": moved["quarantined"],
        "seconds": round(moved["seconds"], 2),
        "migrate_rows_per_s": round(migrate_rate),
        "raw_insert_select_rows_per_s": round(select_rate),
        "raw_executemany_rows_per_s": round(many_rate),
        "migrate_vs_insert_select": round(ratio(migrate_rate, select_rate), 4),
        "migrate_vs_executemany": round(ratio(migrate_rate, many_rate), 4),
        "peak_rss_mib": round(peak / 1024, 1),
        "writer_peak_rss_mib": round(moved["writer_peak_kib"] / 1024, 1),
        "preparer_peak_rss_mib": round(moved["preparer_peak_kib"] / 1024, 1),
        "preparers": moved["preparers"],
        # CPU per moved row (the writer's threads, and the preparing processes): less
        # sensitive than rows/s to what else the shared machine runs.
        "writer_cpu_us_per_row": round(moved["writer_cpu_s"] / rows * 1e6, 1),
        "preparer_cpu_us_per_row": round(moved["preparer_cpu_s"] / rows * 1e6, 1),
        "loadavg_before": load_before,
        "loadavg_after": machine_info()["loadavg"],
    }


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'rows':>9}  {'migrate/s':>9}  {'INSERT…SELECT/s':>15}  {'ratio':>6}  "
        f"{'executemany/s':>13}  {'ratio':>6}  {'peak RSS MiB':>12}  (writer + preparers)"
        f"  CPU µs/row (writer + preparers)"
    ]
    for r in results:
        lines.append(
            f"{r['rows']:>9,}  {r['migrate_rows_per_s']:>9,}  "
            f"{r['raw_insert_select_rows_per_s']:>15,}  {r['migrate_vs_insert_select']:>6.3f}  "
            f"{r['raw_executemany_rows_per_s']:>13,}  {r['migrate_vs_executemany']:>6.3f}  "
            f"{r['peak_rss_mib']:>12}  ({r['writer_peak_rss_mib']} + "
            f"{r['preparer_peak_rss_mib']}, {r['preparers']})  "
            f"{r['writer_cpu_us_per_row']} + {r['preparer_cpu_us_per_row']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=200_000, help="first size (0: none)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each raw copy")
    parser.add_argument("--inline", action="store_true", help="no preparing process")
    parser.add_argument(
        "--preparers", type=int, default=0, help="preparing processes (0: run_migration's default)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [n for n in (args.small, args.rows) if n > 0]
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="domicile-bench-migrate-") as tmp:
            results.append(
                measure(rows, Path(tmp), args.batch_size, args.repeat, args.inline, args.preparers)
            )
    out = {"machine": machine_info(), "batch_size": args.batch_size, "results": results}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(json.dumps(out["machine"]))
    print(_table(results))
    print(
        "ratio = migrate rows/s over the raw copy's rows/s (median of the rounds); the raw"
        " copies move the rows unchanged into one table of the same destination file."
    )


if __name__ == "__main__":
    main()
