"""The gateway (`domicile up`) and the monitor run as separate OS processes over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from domicile.runtime import build_digest

REGIONS = ("eu-ie", "us")


def _monitor(
    url: str, data: Path, keys: list[str], builds: list[str]
) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-c", "from domicile.cli_monitor import monitor; monitor()",
            "--gateway", url, "--data-dir", str(data), "--once"]  # fmt: skip
    for key in keys:
        args += ["--log-key", key]
    for build in builds:
        args += ["--approved-build", build]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_gateway_and_monitor_processes(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    keys = [httpx.get(f"{url}/v1/regions/{r}/log/key").text.strip() for r in REGIONS]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the first checkpoint is signed within a second
        if all(
            httpx.get(f"{url}/v1/regions/{r}/log/checkpoint").status_code == 200 for r in REGIONS
        ):
            break
        time.sleep(0.3)
    clean = _monitor(url, tmp_path / "ok", keys, [build_digest()])
    assert clean.returncode == 0, clean.stderr
    wary = _monitor(url, tmp_path / "wary", keys, ["0" * 64])
    assert wary.returncode == 3, wary.stderr
    assert '"kind": "unknown-build"' in wary.stderr
