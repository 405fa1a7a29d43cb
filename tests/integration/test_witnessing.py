"""A gateway submits each checkpoint to a monitor acting as its C2SP witness and serves
the cosigned checkpoint; a client verifies the witness's cosignature."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from domicile.ledger.checkpoint import parse_checkpoint
from domicile.ledger.cosignature import open_cosignature, parse_cosigner_key
from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.note import parse_note
from domicile.runtime import open_runtime
from domicile.settings import Settings

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "process exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def test_checkpoints_are_cosigned_by_the_monitor_witness(tmp_path: Path) -> None:
    data = tmp_path / "gateway"
    open_runtime(Settings(data_dir=data)).close()  # makes the region log keys
    log_keys = [
        load_or_create_signer(data / "regions" / r / "log.key", f"domicile.local/log/{r}")
        .verifier().verifier_key
        for r in ("eu-ie", "eu-no", "us", "ap-sg")
    ]  # fmt: skip
    witness_dir = tmp_path / "monitor"
    witness_key = subprocess.run(
        [str(BIN / "domicile"), "monitor", "witness-key", "--data-dir", str(witness_dir)],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    gw_port, mon_port = _port(), _port()
    gateway_url = f"http://127.0.0.1:{gw_port}"
    args = [str(BIN / "domicile"), "monitor", "--gateway", gateway_url, "--data-dir",
            str(witness_dir), "--port", str(mon_port), "--interval", "0.5"]  # fmt: skip
    for key in log_keys:
        args += ["--log-key", key]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOMICILE_")}
    with (tmp_path / "monitor.log").open("w") as sink:
        monitor = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, env=env)
    gateway_env = {
        **env,
        "DOMICILE_WITNESSES": f'["http://127.0.0.1:{mon_port} {witness_key}"]',
        "DOMICILE_CHECKPOINT_INTERVAL": "0.3",
    }
    with (tmp_path / "gateway.log").open("w") as sink:
        gateway = subprocess.Popen(
            [str(BIN / "domicile"), "up", "--data-dir", str(data), "--port", str(gw_port)],
            stdout=sink, stderr=subprocess.STDOUT, env=gateway_env,
        )  # fmt: skip
    try:
        _wait(f"http://127.0.0.1:{mon_port}/alerts", monitor)
        _wait(gateway_url + "/healthz", gateway)
        verifier = parse_cosigner_key(witness_key)
        deadline = time.monotonic() + 30
        cosigned = None
        while time.monotonic() < deadline and cosigned is None:
            note = httpx.get(f"{gateway_url}/v1/regions/eu-ie/log/checkpoint").text
            parsed = parse_note(note)
            for signature in parsed.signatures:
                if signature.name == verifier.name:
                    cosigned = (parse_checkpoint(parsed.text), signature)
            time.sleep(0.3)
        assert cosigned is not None, (tmp_path / "gateway.log").read_text()[-2000:]
        checkpoint, signature = cosigned
        assert open_cosignature(checkpoint, signature, verifier) > 0  # the witness's time
    finally:
        for proc in (gateway, monitor):
            proc.terminate()
            proc.wait(timeout=20)
