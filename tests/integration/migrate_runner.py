"""A `migrate run` in its own process, for test_migrate_crash.py to SIGKILL at random points.

Usage: migrate_runner.py DATA_DIR SOURCE_URL MAPPING_FILE BATCH_SIZE [STORAGE_URL] [inline]

`inline` prepares pages in the run's own process instead of a preparing process.
"""

from __future__ import annotations

import sys
from pathlib import Path

from domicile.catalog.catalog import load_catalog
from domicile.migrate.mapping import load_mapping
from domicile.migrate.service import run_migration
from domicile.migrate.source import LegacySource
from domicile.settings import Settings


def main() -> None:
    data_dir, url, mapping_file, batch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    storage = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
    inline = len(sys.argv) > 6 and sys.argv[6] == "inline"
    settings = Settings(data_dir=Path(data_dir), storage_url=storage)
    source = LegacySource(url, load_mapping(Path(mapping_file), load_catalog()))
    print("ready", flush=True)
    report, _ = run_migration(settings, source, batch_size=int(batch), preparing_process=not inline)
    print(f"done {report.moved} {report.quarantined}", flush=True)


if __name__ == "__main__":
    main()
