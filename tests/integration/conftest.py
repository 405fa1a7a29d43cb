"""Fixtures for tests that run real processes: a `domicile up` in a fresh directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_dir() -> Path:
    return Path(sys.executable).parent


@contextmanager
def _domicile_up(cwd: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`domicile up` in `cwd` (with `env` on top of this process's), as a user would
    start it; yields its URL and stops it afterwards."""
    port = free_port()
    os.symlink(Path(sys.prefix), cwd / ".venv")
    log = cwd / "up.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(bin_dir() / "domicile"), "up", "--port", str(port)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"domicile up exited: {log.read_text()}")
    else:
        proc.kill()
        pytest.fail("domicile up did not come up within 60 s")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def domicile_up() -> Callable[..., AbstractContextManager[str]]:
    """`domicile up` for a test that fills its directory before the server starts:
    `with domicile_up(directory, env) as url: ...`."""
    return _domicile_up


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`domicile up` in a fresh directory on the embedded default (SQLite files)."""
    with _domicile_up(tmp_path) as url:
        yield url, tmp_path


@pytest.fixture
def pg_storage_env(pg_dsn: str, pg_prefix: str) -> dict[str, str]:
    """The environment that puts a gateway's stores in fresh PostgreSQL schemas, as the
    README's production section sets it."""
    return {"DOMICILE_STORAGE_URL": f"{pg_dsn}?schema={pg_prefix}"}


@pytest.fixture
def pg_server(tmp_path: Path, pg_storage_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`domicile up` in a fresh directory with every store in PostgreSQL."""
    with _domicile_up(tmp_path, pg_storage_env) as url:
        yield url, tmp_path
