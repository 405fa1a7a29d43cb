"""Relocating N legacy rows end to end vs a raw copy of the same rows, in the same run.

    python bench/migrate.py [--rows 1000000] [--batch-size 5000]

The legacy source is a demo SQLite store (`domicile migrate demo-source`); the
destination is the embedded default (SQLite regions). Baselines, between the same two
databases: `INSERT … SELECT` over an attached copy of the source, and a Python
read-then-`executemany` copy. The relocation runs in a child process so its peak RSS
is its own. Figures go to stdout; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from domicile.catalog.catalog import load_catalog
from domicile.migrate.mapping import load_mapping
from domicile.migrate.service import run_migration
from domicile.migrate.source import LegacySource
from domicile.settings import Settings
data_dir, url, mapping, batch = sys.argv[1:5]
settings = Settings(data_dir=Path(data_dir))
source = LegacySource(url, load_mapping(Path(mapping), load_catalog()))
started = time.perf_counter()
report, _ = run_migration(settings, source, batch_size=int(batch))
print(json.dumps({"seconds": time.perf_counter() - started, "moved": report.moved,
                  "quarantined": report.quarantined}))
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def raw_insert_select(source: Path, dest: Path) -> float:
    """INSERT … SELECT from the attached source into a table of the destination database."""
    conn = _connect(dest)
    conn.execute(f"ATTACH DATABASE '{source}' AS legacy")
    started = time.perf_counter()
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE raw_copy AS SELECT * FROM legacy.users_sg WHERE 0")
    conn.execute("INSERT INTO raw_copy SELECT * FROM legacy.users_sg")
    conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def raw_executemany(source: Path, dest: Path, batch: int) -> float:
    """Read pages from the source and executemany them into the destination."""
    src, dst = sqlite3.connect(source), _connect(dest)
    dst.execute("CREATE TABLE raw_many AS SELECT * FROM (SELECT 1 AS a) WHERE 0")
    dst.execute("DROP TABLE raw_many")
    columns = [r[1] for r in src.execute("PRAGMA table_info(users_sg)")]
    dst.execute(f"CREATE TABLE raw_many ({', '.join(columns)})")
    marks = ", ".join("?" for _ in columns)
    started, after = time.perf_counter(), 0
    while True:
        rows = src.execute(
            "SELECT * FROM users_sg WHERE legacy_id > ? ORDER BY legacy_id LIMIT ?", (after, batch)
        ).fetchall()
        if not rows:
            break
        dst.execute("BEGIN")
        dst.executemany(f"INSERT INTO raw_many VALUES ({marks})", rows)
        dst.execute("COMMIT")
        after = rows[-1][0]
    seconds = time.perf_counter() - started
    src.close()
    dst.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    from domicile.migrate.demo_source import create_demo_source

    with tempfile.TemporaryDirectory(prefix="domicile-bench-migrate-") as tmp:
        root = Path(tmp)
        legacy, mapping = root / "legacy.db", root / "mapping.toml"
        print(f"generating {args.rows} legacy rows", file=sys.stderr)
        mapping.write_text(create_demo_source(f"sqlite:///{legacy}", args.rows, "singapore"))
        shutil.copy(legacy, root / "legacy-raw.db")
        data_dir = root / "data"
        print("relocating", file=sys.stderr)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(data_dir), f"sqlite:///{legacy}", str(mapping),
             str(args.batch_size)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        moved = json.loads(child.stdout.splitlines()[-1])
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        dest = data_dir / "regions" / "eu-ie" / "vault.db"
        print("raw copies", file=sys.stderr)
        select_s = raw_insert_select(root / "legacy-raw.db", dest)
        many_s = raw_executemany(root / "legacy-raw.db", dest, args.batch_size)
    rows = args.rows
    migrate_rate = rows / moved["seconds"]
    out = {
        "rows": rows,
        "moved": moved["moved"],
        "quarantined": moved["quarantined"],
        "migrate_rows_per_s": round(migrate_rate),
        "raw_insert_select_rows_per_s": round(rows / select_s),
        "raw_executemany_rows_per_s": round(rows / many_s),
        "migrate_vs_insert_select": round(migrate_rate / (rows / select_s), 3),
        "migrate_vs_executemany": round(migrate_rate / (rows / many_s), 3),
        "migrate_peak_rss_mib": round(peak_kib / 1024, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
