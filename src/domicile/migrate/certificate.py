"""The deletion certificate: a C2SP signed note per source, and its verification.

Note text (one fact a line, no personal data)::

    domicile-migration-certificate/v1
    source <source id>
    label <source url without credentials>#<table>
    mode delete|tombstone
    moved <rows>
    quarantined <rows>
    issued <RFC 3339 time>
    checkpoint <region> <tree size> <base64 root>
    batch <region> <ledger index> <batch id> <rows> <hex Merkle root of digests>

Verification checks the note's signature, each region's signed checkpoint (by the
log's own key) and every batch entry's inclusion under it (RFC 9162 §2.1.3), that the
entries state the certificate's counts and roots, that the roots recompute from the
progress table's digests, and that a rescan of the source finds no moved row left
and nothing live that is not quarantined.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from domicile.errors import IntegrityError, MalformedNote
from domicile.ledger.checkpoint import open_checkpoint
from domicile.ledger.entry import decode_entry
from domicile.ledger.log import RegionLog
from domicile.ledger.merkle import leaf_hash, verify_inclusion
from domicile.ledger.note import Signer, Verifier, open_note, sign_note
from domicile.migrate.digest import batch_root
from domicile.migrate.source import LegacySource, legacy_key
from domicile.migrate.state import ProgressStore

HEADER = "domicile-migration-certificate/v1"


@dataclass(frozen=True)
class BatchLine:
    """One batch as the certificate states it."""

    region: str
    index: int
    batch_id: str
    count: int
    root: bytes


@dataclass
class Certificate:
    """The facts a certificate states."""

    source: str
    label: str
    mode: str
    moved: int
    quarantined: int
    issued: str
    checkpoints: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    batches: list[BatchLine] = field(default_factory=list)

    def text(self) -> str:
        """The note text."""
        lines = [HEADER, f"source {self.source}", f"label {self.label}", f"mode {self.mode}",
                 f"moved {self.moved}", f"quarantined {self.quarantined}",
                 f"issued {self.issued}"]  # fmt: skip
        for region, (size, root) in sorted(self.checkpoints.items()):
            lines.append(f"checkpoint {region} {size} {base64.b64encode(root).decode()}")
        lines += [
            f"batch {b.region} {b.index} {b.batch_id} {b.count} {b.root.hex()}"
            for b in self.batches
        ]
        return "".join(line + "\n" for line in lines)


def parse_certificate(text: str) -> Certificate:
    """Parse certificate note text; MalformedNote on anything unexpected."""
    lines = text.rstrip("\n").split("\n")
    if not lines or lines[0] != HEADER:
        raise MalformedNote("not a domicile migration certificate")
    heads: dict[str, str] = {}
    cert = Certificate("", "", "", 0, 0, "")
    try:
        for line in lines[1:]:
            word, _, rest = line.partition(" ")
            if word == "checkpoint":
                region, size, root = rest.split(" ")
                cert.checkpoints[region] = (int(size), base64.b64decode(root, validate=True))
            elif word == "batch":
                region, index, batch_id, count, root = rest.split(" ")
                cert.batches.append(
                    BatchLine(region, int(index), batch_id, int(count), bytes.fromhex(root))
                )
            else:
                heads[word] = rest
        cert.source, cert.label, cert.mode = heads["source"], heads["label"], heads["mode"]
        cert.moved, cert.quarantined = int(heads["moved"]), int(heads["quarantined"])
        cert.issued = heads["issued"]
    except (KeyError, ValueError) as exc:
        raise MalformedNote("migration certificate has a malformed line") from exc
    return cert


def issue_certificate(
    progress: ProgressStore, source: LegacySource, logs: Mapping[str, RegionLog], signer: Signer
) -> str:
    """Sign a certificate over every removed batch of the source, with fresh checkpoints."""
    batches = progress.batches(state="removed")
    counts = progress.counts()
    cert = Certificate(
        source=source.source_id,
        label=source.label,
        mode=source.mapping.on_moved,
        moved=sum(b.count for b in batches),
        quarantined=counts["quarantined"],
        issued=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    for region in sorted({b.region for b in batches}):
        signed = logs[region].sign_checkpoint()
        cert.checkpoints[region] = (signed.size, signed.root)
    cert.batches = [
        BatchLine(b.region, b.ledger_index or 0, b.batch_id, b.count, b.root) for b in batches
    ]
    return sign_note(cert.text(), [signer])


@dataclass
class Verified:
    """What a verification checked."""

    batches: int = 0
    moved: int = 0
    live_rows: int = 0
    quarantined: int = 0


def verify_certificate(
    note: str,
    verifier: Verifier,
    logs: Mapping[str, RegionLog],
    progress: ProgressStore,
    source: LegacySource,
) -> Verified:
    """Check a certificate against the ledgers, the progress table and the source."""
    cert = parse_certificate(open_note(note, [verifier]).text)
    if cert.source != source.source_id:
        raise IntegrityError(f"certificate is for source `{cert.source}`, not this one")
    roots = {r: _verify_checkpoint(logs[r], size, root)
             for r, (size, root) in cert.checkpoints.items()}  # fmt: skip
    done = Verified()
    for line in cert.batches:
        if line.region not in roots:
            raise IntegrityError(f"batch `{line.batch_id}` names no checkpoint of its region")
        _verify_batch_entry(logs[line.region], line, *roots[line.region], source.source_id)
        _verify_batch_rows(progress, source, line)
        done.batches += 1
        done.moved += line.count
    if done.moved != cert.moved:
        raise IntegrityError(
            f"certificate states {cert.moved} rows but its batches hold {done.moved}"
        )
    stored = {b.batch_id for b in progress.batches(state="removed")}
    if stored != {b.batch_id for b in cert.batches}:
        raise IntegrityError("certificate batches differ from the recorded progress")
    _rescan(progress, source, done)
    return done


def _verify_checkpoint(log: RegionLog, size: int, root: bytes) -> tuple[int, bytes]:
    notes = [c for c in log.checkpoints() if c.size == size]
    if not notes:
        raise IntegrityError(f"log `{log.origin}` has no signed checkpoint of size {size}")
    checkpoint, _ = open_checkpoint(notes[0].note, [log.signer.verifier()])
    if checkpoint.origin != log.origin or not hmac.compare_digest(checkpoint.root_hash, root):
        raise IntegrityError(
            f"checkpoint {size} of log `{log.origin}` differs from the certificate"
        )
    return size, root


def _verify_batch_entry(
    log: RegionLog, line: BatchLine, size: int, root: bytes, source_id: str
) -> None:
    entry = log.entry(line.index)
    verify_inclusion(leaf_hash(entry), line.index, size, log.inclusion_proof(line.index, size),
                     root)  # fmt: skip
    body = decode_entry(entry)
    expected = {"kind": "migration-batch", "source": source_id, "batch_id": line.batch_id,
                "count": line.count, "root": line.root.hex()}  # fmt: skip
    if any(body.get(k) != v for k, v in expected.items()):
        raise IntegrityError(f"ledger entry {line.index} does not state batch `{line.batch_id}`")


def _verify_batch_rows(progress: ProgressStore, source: LegacySource, line: BatchLine) -> None:
    rows = progress.rows(line.batch_id)
    if len(rows) != line.count or batch_root([r.digest for r in rows]) != line.root:
        raise IntegrityError(f"digests of batch `{line.batch_id}` do not give its root")
    if source.present([r.key for r in rows]):
        raise IntegrityError(f"rows of batch `{line.batch_id}` are still at the source")


def _rescan(progress: ProgressStore, source: LegacySource, done: Verified) -> None:
    """Every live source row must be quarantined, and none may have been moved."""
    for page in source.pages(2000):
        keys = [legacy_key(row[0]) for row in page]
        if progress.moved_among(keys):
            raise IntegrityError("a moved row is still live at the source")
        held = progress.quarantined_among(keys)
        if len(held) != len(keys):
            raise IntegrityError(
                f"{len(keys) - len(held)} live source rows are neither moved nor quarantined"
            )
        done.live_rows += len(keys)
        done.quarantined += len(held)
