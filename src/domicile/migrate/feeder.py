"""Where the writer's prepared pages come from: this process, or one preparing process.

The writer (`relocator.Relocator`) owns every database it writes and the ledger. The
feeder only reads the legacy source (keyset pages) and prepares each page
(`prepare.Preparer`: classify, validate, seal, digest). With a preparing process the
next page is read and prepared on another core while the writer writes the current
one. A thread of the writer takes each page off the pipe as soon as it is sent; at most
one page waits there, one is being sent and one prepared, so memory stays flat.

The process is started with `spawn` (it inherits no open connection, thread or key of
the writer) and gets only the source url, the mapping and the `PrepareSpec`: no KEK, no
control database. It ends when the pages do, and when the writer goes away (its pipe
closes: the next send fails), so a killed run leaves no process behind. Nothing it
does is durable, so a crash anywhere in it needs no recovery.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
from collections.abc import Iterable, Iterator
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
    source: LegacySource, spec: PrepareSpec, size: int, *, process: bool, workers: int = 1
) -> Iterator[Iterator[PreparedPage]]:
    """Prepared pages of every live source row, in id order, `size` rows at a time
    (with `process`, in `workers` preparing processes)."""
    if not process:
        yield (Preparer(spec).prepare(rows) for rows in source.pages(size))
        return
    if workers > 1:
        with _pool_pages(source, spec, size, workers) as pages:
            yield pages
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
    taker = _Taker(receiver)
    try:
        yield taker.pages()
    finally:
        taker.stop()
        if worker.is_alive():
            worker.kill()
        worker.join()
        taker.join()  # the worker is gone, so a read in progress has ended
        receiver.close()


class _Taker:
    """Takes pages off the pipe (and unpickles them) in a thread of its own, so the
    preparing process can hand over a page while the writer is still busy with the
    one before: one more page in memory, no wait on either side."""

    def __init__(self, receiver: Connection) -> None:
        self._receiver = receiver
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="migrate-take", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                item: tuple[str, Any] = self._receiver.recv()
            except (EOFError, OSError):
                item = ("gone", None)
            while not self._stopped.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] != "page":
                return

    def pages(self) -> Iterator[PreparedPage]:
        """The pages, in order; raises what the preparing process reported."""
        while True:
            kind, payload = self._queue.get()
            if kind == "end":
                return
            if kind == "gone":
                raise StorageError("the preparing process ended before the last page")
            if kind == "error":
                if isinstance(payload, DomicileError):
                    raise payload
                raise StorageError(f"the preparing process failed: {payload}")
            yield payload

    def stop(self) -> None:
        """Take no more pages."""
        self._stopped.set()

    def join(self) -> None:
        """Wait for the thread (after the preparing process is gone)."""
        self._thread.join(timeout=10)


@contextmanager
def _pool_pages(
    source: LegacySource, spec: PrepareSpec, size: int, workers: int
) -> Iterator[Iterator[PreparedPage]]:
    """Pages prepared by `workers` processes, page `i` by process `i % workers`.

    The writer reads the source (keyset pages: one reader, so pages never overlap or
    leave a gap) in a thread of its own and hands each page's raw rows to its process;
    the processes get no source url, only rows and the `PrepareSpec`. At most
    `workers + 1` pages are read and not yet taken, so memory stays flat.
    """
    context = multiprocessing.get_context("spawn")
    inboxes: list[Connection] = []
    takers: list[_Taker] = []
    processes = []
    reader: _Reader | None = None
    try:
        for j in range(workers):
            rows_in, rows_out = context.Pipe(duplex=False)
            pages_in, pages_out = context.Pipe(duplex=False)
            worker = context.Process(
                target=_prepare_rows,
                args=(rows_in, pages_out, spec),
                name=f"domicile-migrate-prepare-{j}",
                daemon=True,
            )
            worker.start()
            processes.append(worker)
            rows_in.close()
            pages_out.close()  # only the worker holds the sending end: its exit is our EOF
            inboxes.append(rows_out)
            takers.append(_Taker(pages_in))
        reader = _Reader(source, size, inboxes, workers + 1)
        yield reader.pages(takers)
    finally:
        if reader is not None:
            reader.stop()
        for taker in takers:
            taker.stop()
        for worker in processes:
            if worker.is_alive():
                worker.kill()
            worker.join()
        if reader is not None:
            reader.join()  # a send in progress has failed: the processes are gone
        for taker in takers:
            taker.join()
        for inbox in inboxes:
            inbox.close()


class _Reader:
    """Reads the source's pages in a thread and sends each to its preparing process,
    at most `ahead` pages before the writer takes them."""

    def __init__(
        self, source: LegacySource, size: int, inboxes: list[Connection], ahead: int
    ) -> None:
        self._source = source
        self._size = size
        self._inboxes = inboxes
        self._room = threading.Semaphore(ahead)
        self._stopped = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="migrate-read", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for i, rows in enumerate(self._source.pages(self._size)):
                while not self._room.acquire(timeout=0.1):
                    if self._stopped.is_set():
                        return
                if self._stopped.is_set():
                    return
                self._inboxes[i % len(self._inboxes)].send(("rows", rows))
        except BaseException as exc:  # handed to the writer at the page where it stopped
            self._error = exc
        finally:
            for inbox in self._inboxes:
                with suppress(BrokenPipeError, ConnectionResetError, OSError):
                    inbox.send(("end", None))

    def pages(self, takers: list[_Taker]) -> Iterator[PreparedPage]:
        """The pages in order, each from its process; raises what reading raised."""
        i = 0
        while True:
            try:
                yield next(takers[i % len(takers)].pages())
            except StopIteration:
                if self._error is not None:
                    raise self._error from None
                return
            self._room.release()
            i += 1

    def stop(self) -> None:
        """Read no more pages."""
        self._stopped.set()

    def join(self) -> None:
        """Wait for the thread (after the preparing processes are gone)."""
        self._thread.join(timeout=10)


def _send_pages(pages_out: Connection, pages: Iterable[list[Any]], spec: PrepareSpec) -> None:
    """Prepare and send each page of rows, then `end`; an error is sent, not raised, and
    a writer that is gone stops the process quietly."""
    try:
        preparer = Preparer(spec)
        for rows in pages:
            pages_out.send(("page", preparer.prepare(rows)))
        pages_out.send(("end", None))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the writer is gone: stop quietly
    except Exception as exc:
        _send_error(pages_out, exc)


def _received(rows_in: Connection) -> Iterator[list[Any]]:
    """The pages of rows the writer hands a pool's process, until it says there are none."""
    while True:
        kind, rows = rows_in.recv()
        if kind != "rows":
            return
        yield rows


def _prepare_rows(rows_in: Connection, pages_out: Connection, spec: PrepareSpec) -> None:
    """A preparing process of a pool: prepare each page of rows it is given, then `end`."""
    try:
        _send_pages(pages_out, _received(rows_in), spec)
    finally:
        rows_in.close()
        pages_out.close()


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
        _send_pages(sender, source.pages(size), spec)
    finally:
        source.close()
        sender.close()


def _send_error(sender: Connection, exc: Exception) -> None:
    # A domicile error's message names no value; anything else is named by type only.
    payload: object = exc if isinstance(exc, DomicileError) else type(exc).__name__
    with suppress(BrokenPipeError, ConnectionResetError):
        sender.send(("error", payload))
