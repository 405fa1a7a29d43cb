"""The README's tour, run as written against a real `domicile up` process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def block_after(marker: str) -> str:
    """The fenced code block that follows `<!-- marker -->` in the README."""
    text = README.read_text()
    match = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)\n```", text, re.S)
    assert match, f"README has no block after <!-- {marker} -->"
    return match.group(1)


def bin_dir() -> Path:
    return Path(sys.executable).parent


def run_tour(url: str, cwd: Path, extra_env: dict[str, str] | None = None) -> None:
    """Run the README's shell tour and its Python tour against the gateway at `url`, in
    `cwd` (its data directory's parent), and check what a reader is told to expect."""
    script = block_after("tour")
    env = {**os.environ, "DOMICILE_URL": url, **(extra_env or {})}
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
    assert '{"status":"ready"}' in out
    assert 'domicile_decisions_total{region="us",result="allow"}' in out
    assert 'domicile_decisions_total{region="us",result="deny"}' in out  # the 403s

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


def test_readme_tour_runs_as_written(server: tuple[str, Path]) -> None:
    run_tour(*server)


def test_readme_tour_runs_on_postgresql(
    pg_server: tuple[str, Path], pg_storage_env: dict[str, str], pg_dsn: str, pg_prefix: str
) -> None:
    """The tour against a gateway started as the production section says, with the
    CLI's commands given the same storage URL; the vaults, ledgers, directory and
    principals are then in PostgreSQL, and only the custodians' keyrings stay on local
    disk (as the README says)."""
    url, cwd = pg_server
    run_tour(url, cwd, pg_storage_env)
    data = cwd / "domicile-data"
    local = sorted(str(p.relative_to(data)) for p in data.rglob("*.db"))
    assert local == [f"regions/{r}/keys/keyring.db" for r in ("ap-sg", "eu-ie", "eu-no", "us")]
    with psycopg.connect(pg_dsn) as conn:
        tombstones = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.subjects WHERE state = 'erased'").format(
                sql.Identifier(f"{pg_prefix}_us")
            )
        ).fetchone()
    assert tombstones == (1,)  # Lena's tombstone, in the us region's schema


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


def test_grants_from_the_cli(server: tuple[str, Path]) -> None:
    url, cwd = server
    domicile = str(bin_dir() / "domicile")

    def run(*argv: str) -> str:
        done = subprocess.run(
            [domicile, *argv], cwd=cwd, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    entity = "Trusted Security Partner EU"
    tokens = {
        who: run(
            "principals", "add", "--id", who, "--entity", entity, "--country", "IE", "--role", role
        )
        .strip()
        .splitlines()[-1]
        for who, role in [("ana", "analyst"), ("apo", "approver"), ("bea", "approver")]
    }
    grant = json.loads(
        run(
            "grants",
            "request",
            "--url",
            url,
            "--token",
            tokens["ana"],
            "--region",
            "eu-ie",
            "--category",
            "restricted",
            "--purpose",
            "security",
            "--justification",
            "incident 42",
            "--minutes",
            "15",
        )
    )
    assert grant["state"] == "pending"
    assert grant["steps_required"] == 2
    own = subprocess.run(
        [domicile, "grants", "approve", grant["id"], "--url", url, "--token", tokens["ana"]],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert own.returncode == 1
    assert "own request" in own.stderr
    run("grants", "approve", grant["id"], "--url", url, "--token", tokens["apo"])
    approved = json.loads(
        run("grants", "approve", grant["id"], "--url", url, "--token", tokens["bea"])
    )
    assert approved["state"] == "approved"
    assert approved["approvals"] == ["apo", "bea"]
    listed = json.loads(
        run("grants", "list", "--state", "approved", "--url", url, "--token", tokens["apo"])
    )
    assert [g["id"] for g in listed] == [grant["id"]]
    revoked = json.loads(
        run("grants", "revoke", grant["id"], "--url", url, "--token", tokens["ana"])
    )
    assert revoked["state"] == "revoked"


def test_readme_migration_runs_as_written(tmp_path: Path) -> None:
    os.symlink(Path(sys.prefix), tmp_path / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOMICILE_")}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block_after("tour-migrate")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "quarantine" in done.stdout
    assert "ok: " in done.stdout.splitlines()[-1]
    assert "gone from the source" in done.stdout
