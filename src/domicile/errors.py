"""The one error tree of Domicile.

Every error the package raises on purpose derives from :class:`DomicileError`.
Third-party errors are translated where they enter (``raise ... from exc``); only
``domicile.api`` maps these classes to HTTP statuses, and the Python client maps
problem documents back to the same classes through :func:`error_for_code`.

::

    DomicileError
    ├── ConfigError                 configuration files and settings
    │   ├── TopologyError           topology TOML invalid
    │   └── CatalogError            catalog TOML invalid
    ├── InvalidInput                a request is malformed
    │   ├── UnknownField            field not in the catalog
    │   ├── InvalidFieldValue       value fails the field's type or validation
    │   ├── UnknownCountry          not an ISO 3166-1 alpha-2 code
    │   ├── UnknownRegion           region not in the topology
    │   └── PayloadTooLarge         body or field over its size limit
    ├── AuthenticationError         missing, malformed, unknown or revoked token
    ├── AccessDenied                the decision said no
    ├── NotFound
    │   ├── SubjectNotFound
    │   ├── PrincipalNotFound
    │   ├── GrantNotFound
    │   └── EntryNotFound           a ledger entry, tile or checkpoint
    ├── SubjectErased               the subject was erased (tombstone)
    ├── Conflict                    state does not allow the operation
    │   └── VersionMismatch         the record is not at the version the caller expected
    ├── StorageError                a backend failed
    │   └── MigrationError          schema migration failed or is ahead of the code
    ├── CryptoError
    │   ├── IntegrityError          ciphertext, wrapped key or signature does not verify
    │   └── KeyDestroyed            the data key was shredded
    ├── LedgerError
    │   ├── MalformedNote           signed note / checkpoint / cosignature text is invalid
    │   ├── ProofError              an inclusion or consistency proof does not verify
    │   └── RecordingFailed         an event could not be made durable; request not served
    ├── RequestAbandoned            the client went away before anything was released
    └── RemoteError                 the client got a problem document it does not know
"""

from __future__ import annotations

from typing import ClassVar


class DomicileError(Exception):
    """Root of every error Domicile raises on purpose."""

    code: ClassVar[str] = "domicile-error"
    title: ClassVar[str] = "domicile error"


class ConfigError(DomicileError):
    """A configuration file or setting is invalid."""

    code = "config-error"
    title = "invalid configuration"


class TopologyError(ConfigError):
    """The topology is invalid."""

    code = "topology-error"
    title = "invalid topology"


class CatalogError(ConfigError):
    """The data catalog is invalid."""

    code = "catalog-error"
    title = "invalid data catalog"


class InvalidInput(DomicileError):
    """A request is malformed."""

    code = "invalid-input"
    title = "invalid input"


class UnknownField(InvalidInput):
    """A field is not in the data catalog."""

    code = "unknown-field"
    title = "unknown field"


class InvalidFieldValue(InvalidInput):
    """A value fails its field's type or validation."""

    code = "invalid-field-value"
    title = "invalid field value"


class UnknownCountry(InvalidInput):
    """A country is not an ISO 3166-1 alpha-2 code known to the topology."""

    code = "unknown-country"
    title = "unknown country"


class UnknownRegion(InvalidInput):
    """A region is not in the topology."""

    code = "unknown-region"
    title = "unknown region"


class PayloadTooLarge(InvalidInput):
    """A body or field is over its size limit."""

    code = "payload-too-large"
    title = "payload too large"


class AuthenticationError(DomicileError):
    """The bearer token is missing, malformed, unknown or revoked."""

    code = "unauthenticated"
    title = "authentication required"


class AccessDenied(DomicileError):
    """The decision step said no."""

    code = "access-denied"
    title = "access denied"


class NotFound(DomicileError):
    """A thing does not exist."""

    code = "not-found"
    title = "not found"


class SubjectNotFound(NotFound):
    """No subject has this id."""

    code = "subject-not-found"
    title = "subject not found"


class PrincipalNotFound(NotFound):
    """No principal has this id."""

    code = "principal-not-found"
    title = "principal not found"


class GrantNotFound(NotFound):
    """No grant has this id."""

    code = "grant-not-found"
    title = "grant not found"


class EntryNotFound(NotFound):
    """A ledger entry, tile or checkpoint does not exist."""

    code = "entry-not-found"
    title = "ledger entry not found"


class SubjectErased(DomicileError):
    """The subject was erased; only a tombstone is left."""

    code = "subject-erased"
    title = "subject erased"


class Conflict(DomicileError):
    """The current state does not allow the operation."""

    code = "conflict"
    title = "conflict"


class VersionMismatch(Conflict):
    """The record is not at the version the caller expected."""

    code = "version-mismatch"
    title = "version mismatch"


class StorageError(DomicileError):
    """A storage backend failed."""

    code = "storage-error"
    title = "storage error"


class MigrationError(StorageError):
    """A schema migration failed or the stored schema is newer than the code."""

    code = "migration-error"
    title = "schema migration error"


class CryptoError(DomicileError):
    """A cryptographic operation failed."""

    code = "crypto-error"
    title = "cryptographic error"


class IntegrityError(CryptoError):
    """Ciphertext, a wrapped key or a signature does not verify."""

    code = "integrity-error"
    title = "integrity check failed"


class KeyDestroyed(CryptoError):
    """The subject's data key was destroyed (crypto-shredded)."""

    code = "key-destroyed"
    title = "data key destroyed"


class LedgerError(DomicileError):
    """A ledger operation failed."""

    code = "ledger-error"
    title = "ledger error"


class MalformedNote(LedgerError):
    """A signed note, checkpoint or cosignature is not well formed."""

    code = "malformed-note"
    title = "malformed signed note"


class ProofError(LedgerError):
    """An inclusion or consistency proof does not verify."""

    code = "proof-error"
    title = "proof does not verify"


class RecordingFailed(LedgerError):
    """An event could not be made durable, so the request was not served."""

    code = "recording-failed"
    title = "event could not be recorded"


class RequestAbandoned(DomicileError):
    """The client went away while its request was prepared; nothing was released."""

    code = "request-abandoned"
    title = "the client went away"


class RemoteError(DomicileError):
    """The client received a problem document of a type it does not know."""

    code = "remote-error"
    title = "remote error"


def _all_subclasses(cls: type[DomicileError]) -> list[type[DomicileError]]:
    out: list[type[DomicileError]] = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str) -> type[DomicileError]:
    """Return the error class whose ``code`` is ``code`` (``RemoteError`` if none)."""
    for cls in _all_subclasses(DomicileError):
        if cls.code == code:
            return cls
    return RemoteError
