"""The README's tour, run as written against a real `domicile up` process."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def block_after(marker: str) -> str:
    """The fenced code block that follows `<!-- marker -->` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert match, f"README has no block after <!-- {marker} -->"
    return match.group(1)


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


def test_readme_tour_runs_as_written(server: tuple[str, Path]) -> None:
    url, cwd = server
    script = block_after("tour")
    env = {**os.environ, "DOMICILE_URL": url}
    env.pop("DOMICILE_DATA_DIR", None)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script + '\necho; echo "SVC=$SVC"'],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert '"home_region":"eu-ie"' in out  # registered in Germany → eu-ie
    assert '"email":"lena@example.org"' in out
    assert '"version": 2' in out  # the CLI update
    assert '"home_region": "us"' in out  # relocated
    assert "403\n" in out
    assert "204\n" in out
    assert '"code":"subject-erased"' in out
    assert '"kind": "erasure"' in out  # ledger tail of the us log
    assert "ok: entry included in domicile.local/log/us at tree size" in out

    svc = re.search(r"^SVC=(\S+)$", out, re.M)
    assert svc
    python = subprocess.run(
        [str(bin_dir() / "python"), "-c", block_after("tour-python")],
        cwd=cwd,
        env={**env, "SVC": svc.group(1)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert python.returncode == 0, python.stderr
    assert python.stdout.splitlines()[0] == "eu-no"
    assert "ingrid@example.org" in python.stdout


def test_cli_errors_are_one_line_and_nonzero(server: tuple[str, Path]) -> None:
    url, cwd = server
    domicile = str(bin_dir() / "domicile")
    cases = [
        (
            [
                domicile,
                "principals",
                "add",
                "--id",
                "x",
                "--entity",
                "E",
                "--country",
                "ZZ",
                "--role",
                "service",
            ],
            "ZZ",
        ),
        (
            [
                domicile,
                "principals",
                "add",
                "--id",
                "x",
                "--entity",
                "E",
                "--country",
                "IE",
                "--role",
                "wizard",
            ],
            "wizard",
        ),
        (
            [
                domicile,
                "subjects",
                "get",
                "0" * 32,
                "--purpose",
                "service",
                "--token",
                "dom_" + "A" * 43,
                "--url",
                url,
            ],
            "not known",
        ),
        (
            [
                domicile,
                "subjects",
                "get",
                "0" * 32,
                "--purpose",
                "service",
                "--token",
                "dom_" + "A" * 43,
                "--url",
                "http://127.0.0.1:1",
            ],
            "cannot reach",
        ),
    ]
    for argv, says in cases:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: ")
        assert says in lines[0]


def test_principals_revoke_from_cli_locks_out_at_once(server: tuple[str, Path]) -> None:
    url, cwd = server
    domicile = str(bin_dir() / "domicile")
    added = subprocess.run(
        [
            domicile,
            "principals",
            "add",
            "--id",
            "tmp-svc",
            "--entity",
            "E",
            "--country",
            "US",
            "--role",
            "service",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    token = added.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(url + "/v1/regions", headers=headers).status_code == 200
    subprocess.run(
        [domicile, "principals", "revoke", "--id", "tmp-svc"],
        cwd=cwd,
        check=True,
        capture_output=True,
    )
    assert httpx.get(url + "/v1/regions", headers=headers).status_code == 401
    listed = subprocess.run(
        [domicile, "principals", "list", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    assert token not in listed.stdout
    assert '"tmp-svc"' in listed.stdout
