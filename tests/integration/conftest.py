"""Fixtures for tests that run real processes: a `domicile up` in a fresh directory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bin_dir() -> Path:
    return Path(sys.executable).parent


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`domicile up` in a fresh directory, as a user would start it."""
    port = free_port()
    os.symlink(Path(sys.prefix), tmp_path / ".venv")
    log = tmp_path / "up.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [str(bin_dir() / "domicile"), "up", "--port", str(port)],
            cwd=tmp_path,
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
    yield url, tmp_path
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
