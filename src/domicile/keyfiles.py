"""Private key files made on first use, safely when several processes start at once.

A key file (a log's signing key, a custodian's KEK, a region's PETs secret, a
migration's digest secret, a witness key) is written aside, fsynced, and linked into
place: it appears whole or not at all, so no process reads half a key, and of two
processes that make it at the same moment both end up with the one linked first. The
directory is fsynced after the link, so a key that has been used survives a crash.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def load_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of the private file at `path` (mode 0600), made from `make()` if
    there is none yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = make()
    temp = _write_aside(path, data)
    try:
        os.link(temp, path)  # fails if another process linked its file first
    except FileExistsError:
        return path.read_bytes()
    else:
        _fsync_directory(path.parent)
        return data
    finally:
        temp.unlink(missing_ok=True)


def replace(path: Path, data: bytes) -> None:
    """Put `data` in the private file at `path` (mode 0600) in place of what it held:
    written aside and renamed over it, so a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = _write_aside(path, data)
    try:
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _write_aside(path: Path, data: bytes) -> Path:
    """`data` in a new private file beside `path`, fsynced; its path."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
