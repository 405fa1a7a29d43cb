"""Keys of the privacy-enhancing transforms, derived in the home region and kept there.

One region secret (32 random bytes in a file, mode 0600, next to the custodian's files)
yields, through HKDF-SHA256 (RFC 5869), every key the transforms use:

* one HMAC-SHA256 key per pseudonym *domain* (``info = domicile-pets/v1 | pseudonym |
  region | domain``), so pseudonyms of two domains cannot be linked without the secret;
* one AES-SIV key (512 bits: AES-256 in SIV mode, RFC 5297) for reversible tokens.

The secret and the derived keys never leave the home region: a transform runs in the
gateway of the subject's region, and only its output crosses a border. Re-identifying
a pseudonym or resolving a token needs the secret, so it can only happen in region.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domicile.errors import ConfigError, InvalidInput
from domicile.keyfiles import load_or_create

__all__ = [
    "SECRET_BYTES",
    "LocalPetKeys",
    "PetKeys",
    "create_secret_file",
    "load_or_create_secret_file",
    "verify_domain",
]

SECRET_BYTES = 32
"""Length of a region secret."""

_DOMAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_INFO_PREFIX = b"domicile-pets/v1\x00"
_TOKEN_KEY_BYTES = 64  # AES-256-SIV takes two 256-bit keys


def verify_domain(domain: str) -> None:
    """Raise InvalidInput unless `domain` is a pseudonym domain name (1-128 safe chars)."""
    if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain):
        shown = domain[:64].replace("`", "'") if isinstance(domain, str) else "<not text>"
        raise InvalidInput(
            f"pseudonym domain `{shown}` must be 1-128 of A-Z a-z 0-9 . _ : / - "
            "starting with a letter or digit"
        )


class PetKeys(Protocol):
    """Where the transforms get their keys; an implementation lives in the home region."""

    @property
    def region(self) -> str:
        """The region whose secret the keys come from."""

    def pseudonym_key(self, domain: str) -> bytes:
        """Return the 32-byte HMAC key of pseudonym domain `domain`."""

    def token_key(self) -> bytes:
        """Return the 64-byte AES-SIV key of the region's reversible tokens."""


class LocalPetKeys:
    """Keys derived with HKDF from a region secret held in this process."""

    def __init__(self, region: str, secret: bytes) -> None:
        """Hold `secret`; refuse one shorter than 32 bytes."""
        if len(secret) < SECRET_BYTES:
            raise ConfigError(f"the pets secret of region `{region}` is shorter than 32 bytes")
        self._region = region
        self._secret = bytes(secret)
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._token_key = self._derive(b"token", b"", _TOKEN_KEY_BYTES)

    @classmethod
    def from_file(cls, region: str, path: Path) -> LocalPetKeys:
        """Read the region secret from `path` (made by `create_secret_file`)."""
        try:
            secret = Path(path).read_bytes()
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise ConfigError(f"cannot read pets secret `{path}`: {reason}") from exc
        return cls(region, secret)

    @property
    def region(self) -> str:
        """The region whose secret the keys come from."""
        return self._region

    def _derive(self, purpose: bytes, label: bytes, length: int) -> bytes:
        info = b"\x00".join((_INFO_PREFIX + purpose, self._region.encode(), label))
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(
            self._secret
        )

    def pseudonym_key(self, domain: str) -> bytes:
        """Return the HMAC key of `domain`, derived once and cached."""
        key = self._cache.get(domain)
        if key is None:
            verify_domain(domain)
            key = self._derive(b"pseudonym", domain.encode(), 32)
            with self._lock:
                self._cache[domain] = key
        return key

    def token_key(self) -> bytes:
        """Return the AES-SIV key of the region's reversible tokens."""
        return self._token_key


def load_or_create_secret_file(path: Path) -> bytes:
    """The region secret at `path`, made on first use (32 random bytes, mode 0600, whole
    or not at all: processes starting at once all use the one made first)."""
    return load_or_create(Path(path), lambda: os.urandom(SECRET_BYTES))


def create_secret_file(path: Path) -> None:
    """Write 32 random bytes to `path` (mode 0600); refuse to overwrite an existing secret."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError as exc:
        raise ConfigError(f"pets secret `{path}` exists; refusing to overwrite it") from exc
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"cannot create pets secret `{path}`: {reason}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(SECRET_BYTES))
        handle.flush()
        os.fsync(handle.fileno())
