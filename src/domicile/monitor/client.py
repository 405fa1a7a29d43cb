"""Reading a gateway's public log endpoints over HTTP (docs/ledger.md, "Reading").

Entry bundles are most of what a monitor reads: for a gateway given by its url they are
fetched over the standard library's `http.client` (a third of the CPU httpx spends on
a large body), several at once: `LogClient.bundles` keeps a request in flight on each
of a few kept-alive connections and reads the answers in order, all from the calling
thread. No fetching threads: a thread that must win the GIL back from a busy analyser
after every socket read waits out its switch interval each time, and the gateway sits
idle meanwhile. Every other endpoint, and every injected client (tests pass one), goes
through httpx.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import threading
import urllib.request
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from domicile.errors import EntryNotFound, LedgerError
from domicile.ledger.tiles import TILE_WIDTH, bundle_path

BUNDLES_IN_FLIGHT = 8
"""Bundle requests `LogClient.bundles` keeps in flight, one per kept-alive connection."""


class LogClient:
    """The log endpoints of one gateway; `http` may be any httpx.Client (tests pass one)."""

    def __init__(self, url: str | None = None, *, http: httpx.Client | None = None) -> None:
        """Talk to the gateway at `url`, or through an already configured client."""
        if http is None:
            if url is None:
                raise LedgerError("a gateway url or an http client is needed")
            http = httpx.Client(base_url=url.rstrip("/"), timeout=30.0)
        self.http = http
        self._bundles = BundleReader.for_url(url) if url is not None else None

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()
        if self._bundles is not None:
            self._bundles.close()

    def _get(self, path: str, **params: Any) -> httpx.Response:
        try:
            response = self.http.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise LedgerError(f"gateway unreachable at `{path}`: {exc}") from exc
        if response.status_code == 404:
            raise EntryNotFound(f"gateway has no `{path}`")
        if response.status_code != 200:
            raise LedgerError(f"gateway answered {response.status_code} for `{path}`")
        return response

    def checkpoint(self, region: str) -> str:
        """The latest signed checkpoint note."""
        return self._get(f"/v1/regions/{region}/log/checkpoint").text

    def consistency(self, region: str, size1: int, size2: int) -> list[bytes]:
        """The RFC 9162 consistency proof between two sizes (only the proof hashes)."""
        body = self._get(
            f"/v1/regions/{region}/log/proof/consistency", size1=size1, size2=size2
        ).json()
        return [base64.b64decode(h) for h in body["proof"]]

    def bundle(self, region: str, index: int, width: int = TILE_WIDTH) -> list[bytes]:
        """The entries of entry bundle `index` (C2SP tlog-tiles), `width` of them."""
        path = f"/v1/regions/{region}/log/{bundle_path(index, width)}"
        if self._bundles is not None:
            return split_bundle(self._bundles.get(path), width)
        return split_bundle(self._get(path).content, width)

    def bundles(
        self, region: str, wanted: Iterable[tuple[int, int]], ahead: int = BUNDLES_IN_FLIGHT
    ) -> Generator[list[bytes], None, None]:
        """The entries of each (index, width) bundle of `wanted`, in order.

        Over a url, `ahead` requests are in flight at once (one per connection), so the
        gateway works on the next bundles while the caller handles this one. It raises
        what `bundle` raises, when the caller reaches the bundle concerned.
        """
        if self._bundles is None:
            for index, width in wanted:
                yield self.bundle(region, index, width)
            return
        prefix = f"/v1/regions/{region}/log/"
        pending: deque[int] = deque()
        paths = []
        for index, width in wanted:
            pending.append(width)
            paths.append(prefix + bundle_path(index, width))
        for body in self._bundles.stream(paths, ahead):
            yield split_bundle(body, pending.popleft())

    def unwraps(self, region: str, after: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """The custodian's unwrap records with id > `after`."""
        body = self._get(f"/v1/regions/{region}/log/unwraps", after=after, limit=limit).json()
        return list(body)


class MalformedBundle(LedgerError):
    """A bundle was served but does not decode as the width asked for: what the gateway
    answered is wrong, which is evidence, not a reason to try later."""


def split_bundle(data: bytes, width: int) -> list[bytes]:
    """The entries of a C2SP entry bundle (each a big-endian u16 length and its bytes).

    What `domicile.ledger.tiles.decode_bundle` checks, in one tight loop: the monitor
    splits every bundle of the log, and this is a few times quicker per entry.
    """
    entries: list[bytes] = []
    append = entries.append
    end = len(data)
    offset = 0
    while offset < end:
        if offset + 2 > end:
            raise MalformedBundle("entry bundle ends inside a length prefix")
        start = offset + 2
        offset = start + (data[offset] << 8 | data[offset + 1])
        if offset > end:
            raise MalformedBundle("entry bundle ends inside an entry")
        append(data[start:offset])
    if not entries:
        raise MalformedBundle("entry bundle is empty")
    if len(entries) != width:
        raise MalformedBundle(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries


class BundleReader:
    """GETs over `http.client` on a small pool of kept-alive connections (one per caller)."""

    def __init__(self, scheme: str, host: str, port: int | None, prefix: str) -> None:
        """Read from `scheme://host:port` + `prefix`."""
        self.scheme, self.host, self.port, self.prefix = scheme, host, port, prefix
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    @classmethod
    def for_url(cls, url: str) -> BundleReader | None:
        """A reader for `url`, or None where httpx should go (a proxy applies, not http)."""
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return None
        if parts.username or urllib.request.getproxies().get(parts.scheme):
            return None  # leave credentials and proxies to httpx
        return cls(parts.scheme, parts.hostname, parts.port, parts.path.rstrip("/"))

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (True: it may have gone stale meanwhile) or a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=30.0), False

    def get(self, path: str) -> bytes:
        """The body of a 200 answer; EntryNotFound for 404, LedgerError otherwise."""
        return self._receive(*self._send(path))

    def stream(self, paths: Iterable[str], ahead: int) -> Iterator[bytes]:
        """The bodies of `paths` in order (as `get`), with `ahead` requests in flight.

        Each request in flight has a connection of its own; the next is sent as soon as
        an answer is read. Requests left in flight (an error, or the caller stopped)
        have their connections closed: their answers are never read.
        """
        todo = iter(paths)
        flight: deque[tuple[str, http.client.HTTPConnection, bool]] = deque()
        try:
            for path in itertools.islice(todo, max(1, ahead)):
                flight.append(self._send(path))
            while flight:
                body = self._receive(*flight.popleft())
                for path in itertools.islice(todo, 1):
                    flight.append(self._send(path))
                yield body
        finally:
            for _, conn, _ in flight:
                conn.close()

    def _send(self, path: str) -> tuple[str, http.client.HTTPConnection, bool]:
        """Send GET `path` on a connection: (path, connection, whether it was reused)."""
        while True:
            conn, reused = self._take()
            try:
                conn.request("GET", self.prefix + path)
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                if reused and isinstance(exc, _STALE):
                    continue  # the server closed it while idle: try the next one
                raise LedgerError(f"gateway unreachable at `{path}`: {exc}") from exc
            return path, conn, reused

    def _receive(self, path: str, conn: http.client.HTTPConnection, reused: bool) -> bytes:
        """Read the answer to GET `path` sent on `conn` (sent again if it had gone stale)."""
        while True:
            try:
                response = conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                if reused and isinstance(exc, _STALE):
                    path, conn, reused = self._send(path)
                    continue
                raise LedgerError(f"gateway unreachable at `{path}`: {exc}") from exc
            if response.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)
            if response.status == 404:
                raise EntryNotFound(f"gateway has no `{path}`")
            if response.status != 200:
                raise LedgerError(f"gateway answered {response.status} for `{path}`")
            return body

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._idle.clear()


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""What a request on a connection the server has since closed raises."""
