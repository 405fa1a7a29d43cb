"""Routes serving each region's log to anyone: checkpoint, key, tiles, proofs, entries.

These need no token: entries hold no personal data, and the monitor, auditors and
generic tlog-tiles clients must be able to read them. Layout and encodings follow
C2SP tlog-tiles; proofs follow RFC 9162; bundles follow C2SP tlog-proof.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from domicile.api.deps import runtime_of
from domicile.errors import EntryNotFound, InvalidInput, UnknownRegion
from domicile.ledger.entry import decode_entry
from domicile.ledger.log import RegionLog
from domicile.ledger.merkle import leaf_hash as hash_leaf
from domicile.ledger.proof_bundle import ProofBundle, format_bundle
from domicile.ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    BundleRef,
    TileRef,
    parse_path,
)

router = APIRouter(prefix="/v1/regions/{region}/log", tags=["ledger"])

TEXT = "text/plain; charset=utf-8"
IMMUTABLE = "public, max-age=31536000, immutable"


def _log(request: Request, region: str, reach: int = 0) -> RegionLog:
    """The region's log, caught up to `reach` entries if another process (a second
    gateway, a migration run) integrated them into the same store since it last looked:
    a checkpoint read from the store may be ahead of this process's view."""
    logs = runtime_of(request).logs
    if region not in logs:
        raise UnknownRegion(f"no region `{region[:40]}`")
    log = logs[region]
    if reach > log.size:
        log.refresh()
    return log


class InclusionBody(BaseModel):
    """An RFC 9162 inclusion proof (hashes in standard base64)."""

    index: int
    size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyBody(BaseModel):
    """An RFC 9162 consistency proof between two sizes."""

    size1: int
    size2: int
    root1: str
    root2: str
    proof: list[str]


class EntryBody(BaseModel):
    """One decoded ledger entry."""

    index: int
    entry: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@router.get("/checkpoint", response_class=Response)
def checkpoint(request: Request, region: str) -> Response:
    """The latest signed checkpoint (a C2SP signed note), with any witness cosignatures."""
    log = _log(request, region)
    latest = log.latest_checkpoint()
    if latest is None:
        raise EntryNotFound(f"log of `{region}` has signed no checkpoint yet")
    return Response(
        log.cosigned_note(latest), media_type=TEXT, headers={"Cache-Control": "no-cache"}
    )


@router.get("/key", response_class=Response)
def key(request: Request, region: str) -> Response:
    """The log's verifier key (`name+hash+base64`)."""
    return Response(_log(request, region).signer.verifier().verifier_key + "\n", media_type=TEXT)


@router.get("/tile/{path:path}", response_class=Response)
async def tile(request: Request, region: str, path: str) -> Response:
    """A hash tile or an entry bundle, exactly as C2SP tlog-tiles lays them out.

    It runs on the event loop, like the single read: a tile within the size this
    process knows is one indexed read, and a monitor asks for thousands in a row (on
    the thread pool each one's worker waited out a busy thread's GIL switch interval
    when it came back, and a third of the gateway's time went on the hand-over). A
    tile past that size first catches the log up, which may wait for the log's write
    lock, so it goes to the thread pool; so does every tile of a log on PostgreSQL,
    where a tile not in the cache is a network round trip.
    """
    ref = parse_path("tile/" + path)
    reach = (ref.index * TILE_WIDTH + ref.width) << (TILE_HEIGHT * _level(ref))
    runtime = runtime_of(request)
    logs = runtime.logs
    if region in logs and reach <= logs[region].size and not runtime.reads_wait_on_network:
        return _tile(request, region, ref, reach)
    return await run_in_threadpool(_tile, request, region, ref, reach)


def _tile(request: Request, region: str, ref: TileRef | BundleRef, reach: int) -> Response:
    log = _log(request, region, reach)
    if isinstance(ref, BundleRef):
        body = log.bundle_data(ref.index, ref.width)
    else:
        body = log.tile(ref.level, ref.index, ref.width)
    cache = IMMUTABLE if ref.width == TILE_WIDTH else "no-cache"
    return Response(body, media_type="application/octet-stream", headers={"Cache-Control": cache})


def _leaf(text: str) -> bytes:
    try:
        leaf = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("`leaf_hash` must be base64") from exc
    if len(leaf) != 32:
        raise InvalidInput("`leaf_hash` must be 32 bytes")
    return leaf


@router.get("/proof/inclusion", response_model=InclusionBody)
def inclusion(
    request: Request,
    region: str,
    size: Annotated[int | None, Query(ge=1, description="tree size (default: latest)")] = None,
    index: Annotated[int | None, Query(ge=0)] = None,
    leaf_hash: Annotated[str | None, Query(description="base64 leaf hash")] = None,
) -> InclusionBody:
    """Inclusion proof of an entry, by index or by leaf hash (RFC 9162 §2.1.3)."""
    log = _log(request, region, max(size or 0, (index or 0) + 1))
    if (index is None) == (leaf_hash is None):
        raise InvalidInput("give exactly one of `index` and `leaf_hash`")
    tree = size if size is not None else log.size
    at = index if index is not None else log.index_of(_leaf(leaf_hash or ""))
    return InclusionBody(
        index=at,
        size=tree,
        leaf_hash=_b64(hash_leaf(log.entry(at))),
        root=_b64(log.root(tree)),
        proof=[_b64(h) for h in log.inclusion_proof(at, tree)],
    )


@router.get("/proof/consistency", response_model=ConsistencyBody)
def consistency(
    request: Request,
    region: str,
    size1: Annotated[int, Query(ge=1)],
    size2: Annotated[int | None, Query(ge=1, description="default: latest")] = None,
) -> ConsistencyBody:
    """Consistency proof between two tree sizes (RFC 9162 §2.1.4)."""
    log = _log(request, region, max(size1, size2 or 0))
    second = size2 if size2 is not None else log.size
    return ConsistencyBody(
        size1=size1,
        size2=second,
        root1=_b64(log.root(size1)),
        root2=_b64(log.root(second)),
        proof=[_b64(h) for h in log.consistency_proof(size1, second)],
    )


@router.get("/bundle/{index}", response_class=Response)
def bundle(request: Request, region: str, index: int) -> Response:
    """A C2SP tlog-proof for one entry (the entry itself in `extra`), against a signed
    checkpoint that covers it; `domicile verify` checks it offline."""
    log = _log(request, region, index + 1)
    entry = log.entry(index)
    latest = log.latest_checkpoint()
    if latest is None or latest.size <= index:
        latest = log.sign_checkpoint()
    proof = log.inclusion_proof(index, latest.size)
    text = format_bundle(ProofBundle(index, tuple(proof), latest.note, entry))
    return Response(text, media_type=TEXT)


def _level(ref: object) -> int:
    """A tile's level (an entry bundle covers entries, like level 0)."""
    return ref.level if isinstance(ref, TileRef) else 0


class UnwrapBody(BaseModel):
    """One unwrap as the region's custodian recorded it (a keyed reference, no ids)."""

    id: int
    subject_ref: str
    decision_id: str
    ledger_index: int
    action: str
    unwrapped_at: str


@router.get("/unwraps", response_model=list[UnwrapBody])
def unwraps(
    request: Request,
    region: str,
    after: Annotated[int, Query(ge=0, description="last id already seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[UnwrapBody]:
    """The custodian's own record of unwraps, for the monitor to match against decisions."""
    _log(request, region)  # UnknownRegion
    custodian = runtime_of(request).gateway.regions[region].custodian
    return [UnwrapBody(**record.__dict__) for record in custodian.unwraps(after, limit)]


@router.get("/entries", response_model=list[EntryBody])
def entries(
    request: Request,
    region: str,
    start: Annotated[
        int | None, Query(ge=0, description="first index (default: the last `count`)")
    ] = None,
    count: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[EntryBody]:
    """Decoded entries, oldest first (for `domicile ledger tail`)."""
    log = _log(request, region)
    first = max(0, log.size - count) if start is None else start
    last = min(log.size, first + count)
    return [EntryBody(index=i, entry=decode_entry(log.entry(i))) for i in range(first, last)]
