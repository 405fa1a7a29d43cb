"""One of several processes that open the same fresh data directory at the same moment,
for test_concurrent_start.py.

Usage: start_runtime.py DATA_DIR STORAGE_URL|- START_AT N

Waits until START_AT (a time.time() value), opens the runtime, adds a service principal
of its own and registers one subject through the gateway; prints `ok TOKEN SUBJECT_ID`,
or `failed: …` and exits 1.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from domicile.runtime import open_runtime
from domicile.settings import Settings


def main() -> None:
    data_dir, storage, start_at, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    settings = Settings(data_dir=Path(data_dir), storage_url=None if storage == "-" else storage)
    while time.time() < start_at:
        time.sleep(0.001)
    try:
        runtime = open_runtime(settings)
        try:
            token = runtime.principals.add(f"svc-{n}", "Start Ltd", "IE", {"service"})
            principal = runtime.gateway.authenticate(token)
            subject_id, _ = runtime.gateway.register(principal, "IE", {"email": f"p{n}@ex.org"})
        finally:
            runtime.close()
    except Exception as exc:
        print(f"failed: {type(exc).__name__}: {exc}", flush=True)
        sys.exit(1)
    print(f"ok {token} {subject_id}", flush=True)


if __name__ == "__main__":
    main()
