"""A generic tlog-tiles client, written from the C2SP specs alone, reads a running gateway.

Nothing here imports Domicile: it knows the signed-note, tlog-checkpoint and tlog-tiles
specs, RFC 6962 hashing and the log's verifier key, and recomputes the root.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("tiles")
    port = _free_port()
    domicile = str(Path(sys.executable).parent / "domicile")
    with (data / "up.log").open("w") as sink:
        proc = subprocess.Popen(
            [
                domicile,
                "up",
                "--data-dir",
                str(data / "d"),
                "--port",
                str(port),
                "--demo",
                "--demo-subjects",
                "1200",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOMICILE_CHECKPOINT_INTERVAL": "0.2"},
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail((data / "up.log").read_text())
    time.sleep(0.5)  # one checkpoint interval after the demo data
    yield url
    proc.terminate()
    proc.wait(timeout=20)


# -- signed-note (c2sp.org/signed-note), written from the spec ---------------------------


def parse_vkey(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    name, key_hash, material = vkey.strip().split("+", 2)
    raw = base64.b64decode(material)
    assert raw[0] == 0x01, "ed25519 keys have type 0x01"
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert key_id.hex() == key_hash, "key hash must be the first 4 bytes of the key id hash"
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note: str, vkey: str) -> str:
    name, key_id, public = parse_vkey(vkey)
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        signer, blob = line[2:].rsplit(" ", 1)
        raw = base64.b64decode(blob)
        if signer == name and raw[:4] == key_id:
            public.verify(raw[4:], text.encode())  # raises if the signature is wrong
            return text
    raise AssertionError("no signature by the log's key")


# -- tlog-tiles (c2sp.org/tlog-tiles) and RFC 6962 -------------------------------------


def index_path(n: int) -> str:
    parts = []
    while True:
        parts.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    parts.reverse()
    return "/".join(("x" if i < len(parts) - 1 else "") + f"{p:03d}" for i, p in enumerate(parts))


def tile_url(base: str, level: str, n: int, width: int) -> str:
    suffix = "" if width == 256 else f".p/{width}"
    return f"{base}/tile/{level}/{index_path(n)}{suffix}"


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def read_bundle(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 2], "big")
        out.append(data[at + 2 : at + 2 + size])
        at += 2 + size
    return out


@pytest.mark.parametrize("region", ["eu-ie", "us"])
def test_generic_client_recomputes_the_root(gateway: str, region: str) -> None:
    base = f"{gateway}/v1/regions/{region}/log"
    vkey = httpx.get(base + "/key").text
    text = open_note(httpx.get(base + "/checkpoint").text, vkey)
    origin, size_text, root_b64 = text.splitlines()[:3]
    assert origin.endswith("/" + region)
    size, root = int(size_text), base64.b64decode(root_b64)
    assert size > 0

    entries: list[bytes] = []
    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        response = httpx.get(tile_url(base, "entries", n, width))
        assert response.status_code == 200
        bundle = read_bundle(response.content)
        assert len(bundle) == width
        entries += bundle
    leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    assert mth(leaves) == root

    for n in range((size + 255) // 256):
        width = min(256, size - n * 256)
        tile = httpx.get(tile_url(base, "0", n, width)).content
        assert tile == b"".join(leaves[n * 256 : n * 256 + width])
    # Entries hold no personal data: the demo's synthetic e-mail domain never appears.
    assert not any(b"example.org" in e for e in entries)
