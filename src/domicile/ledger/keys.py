"""The log signing key of a region: a C2SP signer key in a private file, made on first use."""

from __future__ import annotations

import os
from pathlib import Path

from domicile.errors import ConfigError
from domicile.ledger.note import Ed25519Signer, generate_signer_key


def load_or_create_signer(path: Path, name: str) -> Ed25519Signer:
    """Load the signer key at `path` (mode 0600), creating it for `name` if absent."""
    if not path.exists():
        signer_key, _ = generate_signer_key(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_signer(path, name)
        with os.fdopen(fd, "w") as handle:
            handle.write(signer_key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    signer = Ed25519Signer.from_key(path.read_text().strip())
    if signer.name != name:
        raise ConfigError(f"log key `{path}` is for `{signer.name}`, not `{name}`")
    return signer
