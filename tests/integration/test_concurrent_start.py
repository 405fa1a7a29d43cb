"""Processes that start at the same moment on one fresh data directory (and, in
production, one fresh PostgreSQL database) all come up, agree on every key they make,
and serve each other's subjects: two gateways started together by an orchestrator, or
a CLI command beside a first `domicile up`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from domicile.runtime import open_runtime
from domicile.settings import Settings

STARTER = Path(__file__).with_name("start_runtime.py")
PROCESSES = 3


def _start_together(data_dir: Path, storage: str | None) -> list[tuple[str, str]]:
    start_at = time.time() + 4.0  # after every interpreter has imported the package
    procs = [
        subprocess.Popen(
            [sys.executable, str(STARTER), str(data_dir), storage or "-", str(start_at), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output
        # Nothing went wrong quietly either (a checkpoint one process could not sign).
        assert output.startswith("ok "), output
        assert output.count("\n") == 1, output
    return [(out.split()[1], out.split()[2]) for out in outputs]


def _each_reads_every_subject(
    data_dir: Path, storage: str | None, started: list[tuple[str, str]]
) -> None:
    runtime = open_runtime(Settings(data_dir=data_dir, storage_url=storage))
    try:
        for token, _ in started:
            principal = runtime.gateway.authenticate(token)
            for n, (_, subject_id) in enumerate(started):
                view = runtime.gateway.read(principal, subject_id, ["email"], "support")
                assert view.fields == {"email": f"p{n}@ex.org"}
    finally:
        runtime.close()


@pytest.mark.slow
def test_processes_starting_together_on_sqlite(tmp_path: Path) -> None:
    for trial in range(3):
        data_dir = tmp_path / f"data-{trial}"
        _each_reads_every_subject(data_dir, None, _start_together(data_dir, None))


@pytest.mark.slow
@pytest.mark.postgres
def test_processes_starting_together_on_postgresql(
    tmp_path: Path, pg_dsn: str, pg_prefix: str
) -> None:
    for trial in range(3):
        data_dir, storage = tmp_path / f"data-{trial}", f"{pg_dsn}?schema={pg_prefix}{trial}"
        _each_reads_every_subject(data_dir, storage, _start_together(data_dir, storage))
