"""`domicile.Client`: a typed Python client for the HTTP API that raises the same errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote

import httpx

from domicile import errors


@dataclass(frozen=True)
class Subject:
    """A read: the allowed fields, and why the others were withheld."""

    id: str
    home_region: str
    version: int
    fields: dict[str, Any]
    withheld: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Export:
    """Everything held about a subject."""

    id: str
    home_region: str
    version: int
    catalog_version: str
    created_at: str
    updated_at: str
    fields: dict[str, Any]


def _raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("code") or "")
    detail = str(body.get("detail") or response.reason_phrase or "request failed")
    raise errors.error_for_code(code)(detail)


def _error_from(problem: Mapping[str, Any]) -> errors.DomicileError:
    return errors.error_for_code(str(problem.get("code", "")))(str(problem.get("detail", "")))


class Client:
    """Talks to a Domicile gateway with one principal's bearer token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.RemoteError(f"cannot reach the gateway: {type(exc).__name__}") from exc
        _raise_for_problem(response)
        return response

    def register(self, country: str, fields: Mapping[str, Any]) -> tuple[str, str]:
        """Register a person; return (subject id, home region)."""
        body = self._call("POST", "/v1/subjects", json={"country": country, "fields": fields})
        data = body.json()
        return str(data["id"]), str(data["home_region"])

    def get(self, subject_id: str, *, purpose: str, fields: Sequence[str] | None = None) -> Subject:
        """Read a subject's fields for a declared purpose."""
        params = {"purpose": purpose}
        if fields is not None:
            params["fields"] = ",".join(fields)
        data = self._call("GET", f"/v1/subjects/{subject_id}", params=params).json()
        return Subject(**data)

    def update(
        self,
        subject_id: str,
        fields: Mapping[str, Any],
        *,
        if_version: int | None = None,
    ) -> int:
        """Set fields (None removes one); with `if_version`, only if still at that version."""
        headers = {"If-Match": f'"{if_version}"'} if if_version is not None else {}
        data = self._call(
            "PATCH", f"/v1/subjects/{subject_id}", json={"fields": fields}, headers=headers
        ).json()
        return int(data["version"])

    def erase(self, subject_id: str) -> None:
        """Erase a subject (crypto-shredding)."""
        self._call("DELETE", f"/v1/subjects/{subject_id}")

    def export(self, subject_id: str, *, purpose: str = "service") -> Export:
        """Everything held about a subject."""
        data = self._call(
            "GET", f"/v1/subjects/{subject_id}/export", params={"purpose": purpose}
        ).json()
        return Export(**data)

    def batch_get(
        self, subject_ids: Sequence[str], *, purpose: str, fields: Sequence[str] | None = None
    ) -> list[Subject | errors.DomicileError]:
        """Read many subjects; each item is a Subject or the error for that id."""
        body: dict[str, Any] = {"ids": list(subject_ids), "purpose": purpose}
        if fields is not None:
            body["fields"] = list(fields)
        data = self._call("POST", "/v1/subjects:batchGet", json=body).json()
        return [
            Subject(**item["subject"]) if item.get("subject") else _error_from(item["error"])
            for item in data["items"]
        ]

    def relocate(self, subject_id: str, country: str) -> str:
        """Move a subject to the home region of its new country; return that region."""
        data = self._call(
            "POST", f"/v1/subjects/{subject_id}:relocate", json={"country": country}
        ).json()
        return str(data["home_region"])

    def log_checkpoint(self, region: str) -> str:
        """The latest signed checkpoint of a region's log (signed-note text)."""
        return self._call("GET", f"/v1/regions/{region}/log/checkpoint").text

    def log_key(self, region: str) -> str:
        """The verifier key of a region's log."""
        return self._call("GET", f"/v1/regions/{region}/log/key").text.strip()

    def proof_bundle(self, region: str, index: int) -> str:
        """A C2SP tlog-proof for one entry of a region's log."""
        return self._call("GET", f"/v1/regions/{region}/log/bundle/{index}").text

    def log_entries(
        self, region: str, *, start: int | None = None, count: int = 20
    ) -> list[dict[str, Any]]:
        """Decoded entries of a region's log (the last `count` unless `start` is given)."""
        params: dict[str, int] = {"count": count}
        if start is not None:
            params["start"] = start
        data: list[dict[str, Any]] = self._call(
            "GET", f"/v1/regions/{region}/log/entries", params=params
        ).json()
        return data

    def inclusion_proof(
        self,
        region: str,
        *,
        index: int | None = None,
        leaf_hash: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """An inclusion proof by index or base64 leaf hash (hashes in base64)."""
        params: dict[str, Any] = {
            k: v
            for k, v in {"index": index, "leaf_hash": leaf_hash, "size": size}.items()
            if v is not None
        }
        data: dict[str, Any] = self._call(
            "GET", f"/v1/regions/{region}/log/proof/inclusion", params=params
        ).json()
        return data

    def consistency_proof(
        self, region: str, size1: int, size2: int | None = None
    ) -> dict[str, Any]:
        """A consistency proof between two sizes of a region's log."""
        params: dict[str, int] = {"size1": size1}
        if size2 is not None:
            params["size2"] = size2
        data: dict[str, Any] = self._call(
            "GET", f"/v1/regions/{region}/log/proof/consistency", params=params
        ).json()
        return data

    def request_grant(
        self,
        *,
        region: str,
        categories: Sequence[str],
        purpose: str,
        justification: str,
        duration_minutes: int,
        subjects: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Ask for just-in-time access; returns the pending grant."""
        body = {
            "region": region,
            "subjects": list(subjects),
            "categories": list(categories),
            "purpose": purpose,
            "justification": justification,
            "duration_minutes": duration_minutes,
        }
        data: dict[str, Any] = self._call("POST", "/v1/grants", json=body).json()
        return data

    def grants(self, *, state: str | None = None) -> list[dict[str, Any]]:
        """Grants the caller may see."""
        params = {"state": state} if state else {}
        data: list[dict[str, Any]] = self._call("GET", "/v1/grants", params=params).json()
        return data

    def grant_step(self, grant_id: str, step: str) -> dict[str, Any]:
        """`approve`, `deny` or `revoke` a grant."""
        if step not in {"approve", "deny", "revoke"}:
            raise errors.InvalidInput(f"grant step `{step}` is not approve, deny or revoke")
        data: dict[str, Any] = self._call("POST", f"/v1/grants/{grant_id}:{step}").json()
        return data

    def regions(self) -> list[dict[str, Any]]:
        """The regions and their subject counts."""
        data: list[dict[str, Any]] = self._call("GET", "/v1/regions").json()
        return data

    # -- transfers ------------------------------------------------------------------------

    def destinations(self) -> list[dict[str, Any]]:
        """Every recipient entity and its trust status (administrators)."""
        data: list[dict[str, Any]] = self._call("GET", "/v1/destinations").json()
        return data

    def put_destination(
        self, entity: str, *, country: str, status: str, note: str = ""
    ) -> dict[str, Any]:
        """Register a recipient or change its country, status or note."""
        body = {"country": country, "status": status, "note": note}
        data: dict[str, Any] = self._call(
            "PUT", f"/v1/destinations/{quote(entity, safe='')}", json=body
        ).json()
        return data

    def set_destination_status(self, entity: str, status: str, note: str = "") -> dict[str, Any]:
        """Change a recipient's trust status (e.g. `suspended`)."""
        data: dict[str, Any] = self._call(
            "POST",
            f"/v1/destinations/{quote(entity, safe='')}:setStatus",
            json={"status": status, "note": note},
        ).json()
        return data

    def agreements(self) -> list[dict[str, Any]]:
        """The newest version of every agreement."""
        data: list[dict[str, Any]] = self._call("GET", "/v1/agreements").json()
        return data

    def agreement_versions(self, agreement_id: str) -> list[dict[str, Any]]:
        """Every version of one agreement, oldest first."""
        data: list[dict[str, Any]] = self._call(
            "GET", f"/v1/agreements/{quote(agreement_id, safe='')}"
        ).json()
        return data

    def create_agreement(self, terms: Mapping[str, Any]) -> dict[str, Any]:
        """Create version 1 of an agreement from its terms (see docs/transfers.md)."""
        data: dict[str, Any] = self._call("POST", "/v1/agreements", json=dict(terms)).json()
        return data

    def amend_agreement(self, terms: Mapping[str, Any], *, if_version: int) -> dict[str, Any]:
        """Store the next version of agreement `terms["id"]`, if still at `if_version`."""
        data: dict[str, Any] = self._call(
            "PUT",
            f"/v1/agreements/{quote(str(terms.get('id', '')), safe='')}",
            json=dict(terms),
            headers={"If-Match": f'"{if_version}"'},
        ).json()
        return data

    def terminate_agreement(self, agreement_id: str, *, if_version: int) -> dict[str, Any]:
        """End an agreement at once."""
        data: dict[str, Any] = self._call(
            "POST",
            f"/v1/agreements/{quote(agreement_id, safe='')}:terminate",
            headers={"If-Match": f'"{if_version}"'},
        ).json()
        return data

    def export_dataset(
        self,
        out: IO[bytes],
        *,
        region: str,
        agreement: str,
        fields: Sequence[str] | None = None,
        subjects: Sequence[str] | None = None,
        k: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Stream a dataset export into `out`; return records, sha256 and the ledger index.

        `progress(bytes_so_far, total_bytes)` is called as chunks arrive. The digest of
        what arrived is checked against the one the gateway logged.
        """
        body: dict[str, Any] = {"region": region, "agreement": agreement}
        for name, value in (("fields", fields), ("subjects", subjects)):
            if value is not None:
                body[name] = list(value)
        if k is not None:
            body["k"] = k
        try:
            with self._http.stream("POST", "/v1/exports", json=body) as response:
                if not response.is_success:
                    response.read()
                    _raise_for_problem(response)
                return _receive(response, out, progress)
        except httpx.HTTPError as exc:
            raise errors.RemoteError(f"cannot reach the gateway: {type(exc).__name__}") from exc

    def resolve_token(
        self, region: str, *, token: str, field: str, agreement: str, purpose: str
    ) -> Any:
        """Resolve a token back to its value in its home region (authorised officers)."""
        body = {"token": token, "field": field, "agreement": agreement, "purpose": purpose}
        data = self._call(
            "POST", f"/v1/regions/{quote(region, safe='')}/tokens:resolve", json=body
        ).json()
        return data["value"]


def _receive(
    response: httpx.Response, out: IO[bytes], progress: Callable[[int, int], None] | None
) -> dict[str, Any]:
    total = int(response.headers.get("Content-Length", "0") or 0)
    digest, done = hashlib.sha256(), 0
    for chunk in response.iter_bytes():
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    expected = response.headers.get("Domicile-Export-Sha256", "")
    if digest.hexdigest() != expected:
        raise errors.IntegrityError("the export received does not match the digest logged")
    return {
        "records": int(response.headers.get("Domicile-Export-Records", "0")),
        "bytes": done,
        "sha256": expected,
        "ledger_index": int(response.headers.get("Domicile-Export-Ledger-Index", "-1")),
        "agreement": response.headers.get("Domicile-Export-Agreement", ""),
    }
