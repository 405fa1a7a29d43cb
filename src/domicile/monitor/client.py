"""Reading a gateway's public log endpoints over HTTP (docs/ledger.md, "Reading")."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from domicile.errors import EntryNotFound, LedgerError
from domicile.ledger.tiles import TILE_WIDTH, bundle_path, decode_bundle


class LogClient:
    """The log endpoints of one gateway; `http` may be any httpx.Client (tests pass one)."""

    def __init__(self, url: str | None = None, *, http: httpx.Client | None = None) -> None:
        """Talk to the gateway at `url`, or through an already configured client."""
        if http is None:
            if url is None:
                raise LedgerError("a gateway url or an http client is needed")
            http = httpx.Client(base_url=url.rstrip("/"), timeout=30.0)
        self.http = http

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

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
        path = bundle_path(index, width)
        data = self._get(f"/v1/regions/{region}/log/{path}").content
        return decode_bundle(data, width)

    def unwraps(self, region: str, after: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """The custodian's unwrap records with id > `after`."""
        body = self._get(f"/v1/regions/{region}/log/unwraps", after=after, limit=limit).json()
        return list(body)
