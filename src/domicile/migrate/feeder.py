"""Where the writer's prepared pages come from: this process, or one preparing process.

The writer (`relocator.Relocator`) owns every database it writes and the ledger. The
feeder only reads the legacy source (keyset pages) and prepares each page
(`prepare.Preparer`: classify, validate, seal, digest). With a preparing process the
next page is read and prepared on another core while the writer writes the current
one. At most one page waits in the pipe and one is being prepared, so memory stays flat.

The process is started with `spawn` (it inherits no open connection, thread or key of
the writer) and gets only the source url, the mapping and the `PrepareSpec`: no KEK, no
control database. It ends when the pages do, and when the writer goes away (its pipe
closes: the next send fails), so a killed run leaves no process behind. Nothing it
does is durable, so a crash anywhere in it needs no recovery.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from domicile.errors import DomicileError, StorageError
from domicile.migrate.mapping import MappingSpec
from domicile.migrate.prepare import PreparedPage, Preparer, PrepareSpec
from domicile.migrate.source import LegacySource


@contextmanager
def prepared_pages(
    source: LegacySource, spec: PrepareSpec, size: int, *, process: bool
) -> Iterator[Iterator[PreparedPage]]:
    """Prepared pages of every live source row, in id order, `size` rows at a time."""
    if not process:
        yield (Preparer(spec).prepare(rows) for rows in source.pages(size))
        return
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(
        target=_produce,
        args=(sender, source.url_text, _plain_mapping(source.mapping), spec, size),
        name="domicile-migrate-prepare",
        daemon=True,
    )
    worker.start()
    sender.close()  # only the worker holds the sending end: its exit is our EOF
    try:
        yield _receive(receiver)
    finally:
        receiver.close()
        if worker.is_alive():
            worker.kill()
        worker.join()


def _receive(receiver: Connection) -> Iterator[PreparedPage]:
    while True:
        try:
            kind, payload = receiver.recv()
        except EOFError:
            raise StorageError("the preparing process ended before the last page") from None
        if kind == "end":
            return
        if kind == "error":
            if isinstance(payload, DomicileError):
                raise payload
            raise StorageError(f"the preparing process failed: {payload}")
        yield payload


def _plain_mapping(mapping: MappingSpec) -> dict[str, Any]:
    """A picklable copy of a mapping (its column map is a read-only proxy)."""
    return {**mapping.__dict__, "columns": dict(mapping.columns)}


def _produce(
    sender: Connection, url: str, mapping: dict[str, Any], spec: PrepareSpec, size: int
) -> None:
    """The preparing process: read, prepare and send every page, then `end`."""
    mapping = {**mapping, "columns": MappingProxyType(mapping["columns"])}
    try:
        source = LegacySource(url, MappingSpec(**mapping))
    except Exception as exc:
        _send_error(sender, exc)
        return
    try:
        preparer = Preparer(spec)
        for rows in source.pages(size):
            sender.send(("page", preparer.prepare(rows)))
        sender.send(("end", None))
    except (BrokenPipeError, ConnectionResetError):
        return  # the writer is gone: stop quietly
    except Exception as exc:
        _send_error(sender, exc)
    finally:
        source.close()
        sender.close()


def _send_error(sender: Connection, exc: Exception) -> None:
    # A domicile error's message names no value; anything else is named by type only.
    payload: object = exc if isinstance(exc, DomicileError) else type(exc).__name__
    with suppress(BrokenPipeError, ConnectionResetError):
        sender.send(("error", payload))
