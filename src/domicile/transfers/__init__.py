"""Cross-border transfers: agreements, the destination registry and bulk thresholds.

See ``docs/transfers.md``. `model` holds the pure rules; `store` and `thresholds` keep
state behind the `Database` protocol (SQLite and PostgreSQL).
"""

from domicile.transfers.model import (
    STRICTER,
    Agreement,
    AgreementDraft,
    Destination,
    TrustStatus,
    resolve_fields,
)
from domicile.transfers.store import AgreementStore, DestinationRegistry
from domicile.transfers.thresholds import (
    REF_DOMAIN,
    CounterStatus,
    ThresholdConfig,
    ThresholdCounter,
    ThresholdStatus,
    load_threshold_config,
)

__all__ = [
    "REF_DOMAIN",
    "STRICTER",
    "Agreement",
    "AgreementDraft",
    "AgreementStore",
    "CounterStatus",
    "Destination",
    "DestinationRegistry",
    "ThresholdConfig",
    "ThresholdCounter",
    "ThresholdStatus",
    "TrustStatus",
    "load_threshold_config",
    "resolve_fields",
]
