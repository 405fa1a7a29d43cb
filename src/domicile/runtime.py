"""Wiring: build a running Domicile (regions, directory, principals, gateway) from Settings.

Nothing is built at import time; `open_runtime(settings)` does it all and
`Runtime.close()` releases it.
"""

from __future__ import annotations

import functools
import hashlib
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domicile import __version__
from domicile.catalog.catalog import Catalog, load_catalog
from domicile.errors import ConfigError, StorageError
from domicile.gateway.pipeline import Gateway, RegionRuntime
from domicile.gateway.record import LedgerRecorder
from domicile.gateway.relocation import RecoverySweeper, recover
from domicile.gateway.request import Event
from domicile.gateway.transfer import TransferDecider, TransferDesk
from domicile.gateway.transform import Outbound
from domicile.grants.desk import GrantDesk
from domicile.grants.store import GrantStore
from domicile.keys.custodian import Custodian
from domicile.keys.local import LocalCustodian
from domicile.ledger.keys import load_or_create_signer
from domicile.ledger.log import RegionLog
from domicile.ledger.sequencer import Checkpointer, Sequencer
from domicile.ledger.witnessing import Witness
from domicile.pets.keys import LocalPetKeys, PetKeys, load_or_create_secret_file
from domicile.policy.adapter import CedarDecider
from domicile.policy.engine import PolicyEngine
from domicile.policy.record import ledger_record
from domicile.principals.store import PrincipalStore
from domicile.residency.directory import SubjectDirectory
from domicile.residency.topology import Region, Topology, load_topology
from domicile.settings import Settings
from domicile.storage.database import Database, open_database
from domicile.storage.url import (
    PostgresUrl,
    SqliteUrl,
    StorageUrl,
    parse_storage_url,
    with_schema,
)
from domicile.transfers.counts.legacy import move_legacy_counts
from domicile.transfers.store import AgreementStore, DestinationRegistry
from domicile.transfers.thresholds import REF_DOMAIN, ThresholdCounter, load_threshold_config
from domicile.vault.store import Vault


@dataclass
class Runtime:
    """Everything a gateway process holds open."""

    settings: Settings
    topology: Topology
    catalog: Catalog
    gateway: Gateway
    principals: PrincipalStore
    directory: SubjectDirectory
    logs: dict[str, RegionLog]
    checkpointer: Checkpointer
    grants: GrantDesk
    policy: PolicyEngine
    transfers: TransferDesk
    build: str = ""
    """The build digest this process logged at start (`gateway-build` entries)."""
    sweeper: RecoverySweeper | None = None
    """Recovers what was left idle by a crash elsewhere (None when `recovery_idle` is 0)."""

    @functools.cached_property
    def reads_wait_on_network(self) -> bool:
        """True when a store a read touches is a PostgreSQL server, not a local file.

        A read's lookups are then network round trips: the API runs such a read in a
        worker thread, where the waits overlap, instead of on the event loop, where each
        one would hold up every other request."""
        return any(db.dialect == "postgres" for db in self.stores().values())

    def stores(self) -> dict[str, Database]:
        """Every database this process serves from, each once, by what it holds."""
        out: dict[str, Database] = {"control": self.directory.db}
        if self.principals.db is not self.directory.db:
            out["principals"] = self.principals.db
        for name, region in self.gateway.regions.items():
            out[f"{name} vault"] = region.vault.db
        for name, region_log in self.logs.items():
            out[f"{name} log"] = region_log.db
        counters = {id(c.db): c.db for c in self.transfers.counters.values()}
        for n, db in enumerate(counters.values()):
            out["thresholds" if len(counters) == 1 else f"thresholds {n + 1}"] = db
        return out

    def unanswered_stores(self, timeout: float) -> list[str]:
        """The names of the stores that fail a read of their own tables, or (on a server)
        give no answer within `timeout` seconds: what a readiness check reports.

        Servers are asked all at once, on threads of the runtime's own, so that a server
        that is down costs `timeout` once, not once per schema; local files are read here.
        """
        stores = self.stores()
        asked = {
            name: self._probes.submit(_answers, db)
            for name, db in stores.items()
            if db.dialect == "postgres"
        }
        failed = [n for n, db in stores.items() if db.dialect == "sqlite" and not _answers(db)]
        done, _ = futures.wait(asked.values(), timeout=timeout)
        failed += [name for name, f in asked.items() if f not in done or not f.result()]
        return sorted(failed)

    @functools.cached_property
    def _probes(self) -> futures.ThreadPoolExecutor:
        servers = sum(db.dialect == "postgres" for db in self.stores().values())
        return futures.ThreadPoolExecutor(max(servers, 1), thread_name_prefix="readiness")

    def reload_policy(self) -> dict[str, Any]:
        """Re-read the policy files, record the new version in every region, then activate
        it: if it cannot be recorded (a ledger that fails, an entry too large), the version
        in force stays, so no decision is ever made under a version the logs lack."""
        with self.policy.reloading(
            self.settings.policy_file,
            schema=self.settings.policy_schema_file,
            config=self.settings.policy_config_file,
        ) as snapshot:
            record = snapshot.version_record()
            entry = ledger_record(record)  # ConfigError if too large: nothing activated
            self.gateway.record(
                [Event("policy-version", name, entry) for name in self.topology.regions]
            )
        return record

    def close(self) -> None:
        """Sign a last checkpoint, then close every database and custodian."""
        if self.sweeper is not None:
            self.sweeper.stop()
        self.gateway.heartbeat.stop()
        self.checkpointer.stop()
        if "_probes" in self.__dict__:
            self._probes.shutdown(wait=False, cancel_futures=True)
        stores = self.stores()
        for region in self.gateway.regions.values():
            region.close()  # its vault and its custodian
        closed = {id(region.vault.db) for region in self.gateway.regions.values()}
        for db in stores.values():
            if id(db) not in closed:
                db.close()


def _answers(db: Database) -> bool:
    """Whether `db` answers a read of the table every store has (its migrations)."""
    try:
        db.query("SELECT count(*) FROM schema_migrations")
    except StorageError:
        return False
    return True


def _expand(template: str, settings: Settings) -> str:
    return template.replace("{data_dir}", str(settings.data_dir.resolve()))


def _schema_prefix(url: PostgresUrl) -> str:
    return "domicile" if url.schema == "public" else url.schema


def region_storage(region: Region, settings: Settings) -> StorageUrl:
    """The storage url of a region: the shared PostgreSQL one if set, else the topology's."""
    if settings.storage_url:
        shared = parse_storage_url(settings.storage_url)
        if isinstance(shared, PostgresUrl):
            return with_schema(shared, f"{_schema_prefix(shared)}_{region.name.replace('-', '_')}")
        raise ConfigError("DOMICILE_STORAGE_URL must be a postgresql:// url")
    return parse_storage_url(_expand(region.storage, settings))


def _beside_control(settings: Settings, name: str) -> StorageUrl:
    """Schema `<prefix>_<name>` of the shared PostgreSQL url if set, else `DATA_DIR/<name>.db`."""
    if settings.storage_url:
        shared = parse_storage_url(settings.storage_url)
        if isinstance(shared, PostgresUrl):
            return with_schema(shared, f"{_schema_prefix(shared)}_{name}")
        raise ConfigError("DOMICILE_STORAGE_URL must be a postgresql:// url")
    return SqliteUrl(settings.data_dir.resolve() / f"{name}.db")


def control_storage(settings: Settings) -> StorageUrl:
    """Where the directory and principals live (no personal data)."""
    return _beside_control(settings, "control")


def thresholds_storage(settings: Settings) -> StorageUrl:
    """Where the threshold counters live: beside the control data, in a database of
    their own, so that counting a large export never holds the control data's lock."""
    return _beside_control(settings, "thresholds")


def open_custodian(region: Region, settings: Settings) -> Custodian:
    """Open a region's custodian from its `custodian` url (only `local:` ships today)."""
    url = _expand(region.custodian, settings)
    if url.startswith("local:"):
        return LocalCustodian(region.name, Path(url[len("local:") :]))
    raise ConfigError(f"custodian `{url}` of region `{region.name}` is not supported")


def ledger_storage(region: Region, settings: Settings) -> StorageUrl:
    """A region's log lives beside its vault: `ledger.db` next to the SQLite file, or the
    same PostgreSQL schema (its own tables)."""
    url = region_storage(region, settings)
    if isinstance(url, SqliteUrl):
        return SqliteUrl(url.path.with_name("ledger.db"))
    return url


def open_log(region: Region, settings: Settings) -> RegionLog:
    """Open a region's log with its signing key (made on first start)."""
    origin = f"{settings.log_origin}/{region.name}"
    key_file = settings.data_dir.resolve() / "regions" / region.name / "log.key"
    signer = load_or_create_signer(key_file, origin)
    return RegionLog(origin, open_database(ledger_storage(region, settings)), signer)


def build_digest() -> str:
    """SHA-256 over the files of the installed `domicile` package (path and content)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".pyc"):
        digest.update(str(path.relative_to(root)).encode() + b"\x00")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _start_events(
    topology: Topology, catalog: Catalog, engine: PolicyEngine, build: str
) -> list[Event]:
    events: list[Event] = []
    policy_entry = ledger_record(engine.snapshot.version_record())
    for name in topology.regions:
        events.append(Event("gateway-build", name, {"digest": build, "version": __version__}))
        events.append(Event("policy-version", name, policy_entry))
        events.append(
            Event(
                "catalog-version",
                name,
                {
                    "version": catalog.version,
                    "digest": catalog.digest(),
                    "topology_version": topology.version,
                    "topology_digest": topology.digest(),
                },
            )
        )
    return events


def open_pet_keys(region: Region, settings: Settings) -> PetKeys:
    """A region's PETs keys, from `regions/<region>/pets.secret` (made on first start).

    The secret sits beside the region's log key and custodian, never in another region.
    """
    path = settings.data_dir.resolve() / "regions" / region.name / "pets.secret"
    return LocalPetKeys(region.name, load_or_create_secret_file(path))


def open_transfers(
    control: Database, topology: Topology, catalog: Catalog, settings: Settings
) -> TransferDesk:
    """The agreements and destinations (control database), the threshold counters (their
    own database, with what an earlier version counted in the control one), and keys."""
    destinations = DestinationRegistry(control)
    agreements = AgreementStore(control, destinations)  # migrates the control side first
    keys = {name: open_pet_keys(region, settings) for name, region in topology.regions.items()}
    config = load_threshold_config(settings.thresholds_file)
    counts = open_database(thresholds_storage(settings))
    counters = {
        name: ThresholdCounter(counts, key.pseudonym_key(REF_DOMAIN), config)
        for name, key in keys.items()
    }
    move_legacy_counts(counts, control)
    return TransferDesk(topology, catalog, agreements, destinations, counters, keys)


def open_principals(settings: Settings) -> PrincipalStore:
    """Open the principal store alone (for the CLI's `principals` commands)."""
    return PrincipalStore(open_database(control_storage(settings)))


def open_runtime(settings: Settings) -> Runtime:
    """Open every store the settings name and wire the gateway pipeline."""
    topology = load_topology(settings.topology_file)
    catalog = load_catalog(settings.catalog_file)
    control = open_database(control_storage(settings))
    directory = SubjectDirectory(control)
    principals = PrincipalStore(control)
    regions = {
        name: RegionRuntime(
            name,
            Vault(name, open_database(region_storage(region, settings))),
            open_custodian(region, settings),
        )
        for name, region in topology.regions.items()
    }
    logs = {name: open_log(region, settings) for name, region in topology.regions.items()}
    engine = PolicyEngine.load(
        settings.policy_file,
        schema=settings.policy_schema_file,
        config=settings.policy_config_file,
    )
    grant_store = GrantStore(control)
    transfers = open_transfers(control, topology, catalog, settings)
    gateway = Gateway(
        topology=topology,
        catalog=catalog,
        regions=regions,
        directory=directory,
        principals=principals,
        decider=TransferDecider(CedarDecider(engine, topology, catalog)),
        grants=grant_store,
        transformer=Outbound(transfers.keys),
        recorder=LedgerRecorder({name: Sequencer(log) for name, log in logs.items()}),
        max_field_bytes=settings.max_field_bytes,
        max_batch_ids=settings.max_batch_ids,
        transfers=transfers,
        recovery_idle=settings.recovery_idle,
    )
    build = build_digest()
    gateway.record(_start_events(topology, catalog, engine, build))
    # Only what has been idle a while: another process on the same directory may be in
    # the middle of a registration (a CLI command beside a running gateway, two gateways).
    recover(gateway, idle_for=gateway.recovery_idle)
    checkpointer = Checkpointer(
        list(logs.values()),
        settings.checkpoint_interval,
        [Witness.parse(spec) for spec in settings.witnesses],
    )
    checkpointer.sign_all()
    checkpointer.start()
    desk = GrantDesk(gateway, grant_store, dict(engine.snapshot.config.approval_steps))
    sweeper = RecoverySweeper(gateway, gateway.recovery_idle) if gateway.recovery_idle else None
    if sweeper is not None:
        sweeper.start()
    return Runtime(
        settings,
        topology,
        catalog,
        gateway,
        principals,
        directory,
        logs,
        checkpointer,
        desk,
        engine,
        transfers,
        build,
        sweeper,
    )
