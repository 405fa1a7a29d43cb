"""The custodian protocol: the only holder of a region's key-encryption key.

A custodian creates, unwraps and destroys per-subject data keys. The vault never
sees a key-encryption key, and wrapped data keys are kept by the custodian, not in
the vault, so destroying one leaves every copy of the vault (backups included)
unreadable for that subject. A KMS or HSM can stand in for the local custodian by
implementing this protocol; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from domicile.errors import KeyDestroyed


class Authorization(NamedTuple):
    """What the gateway shows the custodian: the decision that allowed the key's use (a
    named tuple: a batch read makes one per record)."""

    decision_id: str
    action: str
    ledger_index: int | None = None


@dataclass(frozen=True)
class UnwrapRecord:
    """The custodian's own record of one unwrap (no personal data: a keyed reference)."""

    id: int
    subject_ref: str
    decision_id: str
    ledger_index: int
    action: str
    unwrapped_at: str


class Custodian(Protocol):
    """Holds one region's keys."""

    region: str

    def create_data_keys(
        self, subject_ids: Sequence[str], authorization: Authorization
    ) -> dict[str, bytes]:
        """Make, wrap and keep new data keys for subjects; return them for immediate use.

        A subject whose earlier key was destroyed (it left the region) gets a new one;
        a subject with a live key is a Conflict.
        """

    def unwrap_data_key(self, subject_id: str, authorization: Authorization) -> bytes:
        """Return a subject's data key against the ledger reference of an allow decision.

        Refuses (AccessDenied) without a ledger reference, raises KeyDestroyed once
        shredded, and keeps its own durable record of every unwrap.
        """

    def unwrap_data_keys(
        self, requests: Sequence[tuple[str, Authorization]]
    ) -> dict[str, bytes | KeyDestroyed]:
        """Unwrap several keys at once (one durable unwrap record for the batch)."""

    async def unwrap_data_keys_async(
        self, requests: Sequence[tuple[str, Authorization]]
    ) -> dict[str, bytes | KeyDestroyed]:
        """`unwrap_data_keys` for a caller on an event loop: the durable unwrap record is
        written off the loop, and the keys are returned only once it is."""

    def unwraps(self, after: int = 0, limit: int = 1000) -> list[UnwrapRecord]:
        """The custodian's record of unwraps with id > `after`, oldest first."""

    def import_data_keys(self, keys: Mapping[str, bytes], authorization: Authorization) -> None:
        """Wrap and keep data keys made elsewhere for new subjects (a bulk load's workers,
        which never see the key-encryption key); Conflict if any already has a key."""

    def destroy_data_key(self, subject_id: str, authorization: Authorization) -> None:
        """Shred a subject's data key for good (idempotent)."""

    def destroy_data_keys(self, subject_ids: Sequence[str], authorization: Authorization) -> None:
        """`destroy_data_key` for many subjects at once."""

    def subject_ref(self, subject_id: str) -> str:
        """The subject's keyed ledger reference; unlinkable once its key is destroyed."""

    def subject_refs(self, subject_ids: Sequence[str]) -> dict[str, str]:
        """`subject_ref` for many subjects, a few hundred per query."""

    def close(self) -> None:
        """Release resources."""
