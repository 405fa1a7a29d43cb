"""Where a source's migration secrets live: `DATA_DIR/migrate/` (mode 0700).

- `<source id>.secret`: 32 random bytes, the HMAC key of the record digests (0600)
- `<source id>.cert`: the latest deletion certificate (a signed note)
- `certificate.key` / `certificate.vkey`: the signer of the certificates and its
  verifier key (give the latter to the monitor and the auditors)
"""

from __future__ import annotations

import os
from pathlib import Path

from domicile.errors import ConfigError
from domicile.keyfiles import load_or_create
from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.note import Ed25519Signer


def migrate_dir(data_dir: Path) -> Path:
    """The migration directory under the data directory, made on first use."""
    path = data_dir.resolve() / "migrate"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def load_or_create_secret(path: Path) -> bytes:
    """The digest secret at `path`, made (0600, whole or not at all) on first use."""
    secret = load_or_create(path, lambda: os.urandom(32))
    if len(secret) != 32:
        raise ConfigError(f"migration secret `{path}` is not 32 bytes")
    return secret


def certificate_signer(data_dir: Path, log_origin: str) -> Ed25519Signer:
    """The certificate signer (`<log origin prefix>/migrate`), and its verifier key file."""
    folder = migrate_dir(data_dir)
    name = log_origin.rsplit("/", 1)[0] + "/migrate" if "/" in log_origin else "migrate"
    signer = load_or_create_signer(folder / "certificate.key", name)
    verifier_key = signer.verifier().verifier_key
    load_or_create(folder / "certificate.vkey", lambda: (verifier_key + "\n").encode())
    return signer
