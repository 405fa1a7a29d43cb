"""The log signing key of a region: a C2SP signer key in a private file, made on first use."""

from __future__ import annotations

from pathlib import Path

from domicile.errors import ConfigError
from domicile.keyfiles import load_or_create
from domicile.ledger.note import Ed25519Signer, generate_signer_key


def load_or_create_signer(path: Path, name: str) -> Ed25519Signer:
    """Load the signer key at `path` (mode 0600), creating it for `name` if absent."""
    text = load_or_create(path, lambda: (generate_signer_key(name)[0] + "\n").encode())
    signer = Ed25519Signer.from_key(text.decode().strip())
    if signer.name != name:
        raise ConfigError(f"log key `{path}` is for `{signer.name}`, not `{name}`")
    return signer
