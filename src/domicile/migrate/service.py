"""What the CLI commands do, wired from Settings: run, status and verify a migration."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from domicile.errors import ConfigError
from domicile.ledger.note import parse_verifier_key
from domicile.migrate.certificate import Verified, issue_certificate, verify_certificate
from domicile.migrate.deep import verify_digests
from domicile.migrate.relocator import Operator, Relocator, RunReport
from domicile.migrate.source import LegacySource
from domicile.migrate.state import ProgressStore
from domicile.migrate.workspace import certificate_signer, load_or_create_secret, migrate_dir
from domicile.runtime import control_storage, open_log, open_runtime
from domicile.settings import Settings
from domicile.storage.database import open_database


def certificate_path(settings: Settings, source: LegacySource) -> Path:
    """Where a source's latest certificate is kept."""
    return migrate_dir(settings.data_dir) / f"{source.source_id}.cert"


def run_migration(
    settings: Settings,
    source: LegacySource,
    *,
    batch_size: int = 10_000,
    max_rate: float | None = None,
    operator: str = "domicile-migrate",
    on_rows: Callable[[int, float], None] | None = None,
    preparing_process: bool | None = None,
    preparers: int | None = None,
) -> tuple[RunReport, Path]:
    """Recover, move every live row, then sign and write the source's certificate.

    Pages are prepared in processes of their own when `preparing_process` is true
    (None: when this machine has more than one CPU), `preparers` of them (None: two
    when it has more than one CPU: preparing costs about as much CPU as writing, and
    one preparing process leaves the writer waiting for pages).
    """
    cpus = os.cpu_count() or 1
    if preparing_process is None:
        preparing_process = cpus > 1
    if preparers is None:
        preparers = 2 if cpus > 1 else 1
    secret = load_or_create_secret(migrate_dir(settings.data_dir) / f"{source.source_id}.secret")
    signer = certificate_signer(settings.data_dir, settings.log_origin)
    runtime = open_runtime(settings)
    try:
        progress = ProgressStore(runtime.directory.db, source.source_id)
        progress.register(source.label)
        relocator = Relocator(runtime, source, progress, secret, operator=Operator(operator),
                              page_size=batch_size, max_rows_per_second=max_rate,
                              preparing_process=preparing_process,
                              preparers=preparers)  # fmt: skip
        started, done = time.monotonic(), 0

        def advance(rows: int) -> None:
            nonlocal done
            done += rows
            if on_rows is not None:
                on_rows(rows, done / max(time.monotonic() - started, 1e-6))

        report = relocator.run(advance)
        note = issue_certificate(progress, source, runtime.logs, signer)
        path = certificate_path(settings, source)
        temp = path.with_suffix(".tmp")
        temp.write_text(note)
        temp.replace(path)
    finally:
        runtime.close()
    return report, path


def migration_status(settings: Settings, source: LegacySource) -> dict[str, object]:
    """Rows by progress state, quarantined rows, rows left at the source, certificate."""
    db = open_database(control_storage(settings))
    try:
        progress = ProgressStore(db, source.source_id)
        counts = progress.counts()
        in_flight = sum(v for k, v in counts.items() if k in {"copying", "moved", "recorded"})
        cert = certificate_path(settings, source)
        return {
            "source": source.label,
            "moved": counts.get("removed", 0),
            "in_flight": in_flight,
            "quarantined": counts["quarantined"],
            "live_at_source": source.count_live(),
            "certificate": str(cert) if cert.exists() else "none yet",
        }
    finally:
        db.close()


def verify_migration(
    settings: Settings,
    source: LegacySource,
    cert_file: Path | None,
    key_file: Path | None,
    *,
    deep: bool = False,
) -> Verified:
    """Check a certificate against the ledgers, the progress table and the source."""
    from domicile.residency.topology import load_topology

    cert_file = cert_file or certificate_path(settings, source)
    if not cert_file.is_file():
        raise ConfigError(f"no certificate at `{cert_file}`: run the migration first")
    key_file = key_file or migrate_dir(settings.data_dir) / "certificate.vkey"
    verifier = parse_verifier_key(key_file.read_text().strip())
    topology = load_topology(settings.topology_file)
    logs = {name: open_log(region, settings) for name, region in topology.regions.items()}
    db = open_database(control_storage(settings))
    try:
        progress = ProgressStore(db, source.source_id)
        done = verify_certificate(cert_file.read_text(), verifier, logs, progress, source)
    finally:
        db.close()
        for log in logs.values():
            log.db.close()
    if deep:
        secret = load_or_create_secret(
            migrate_dir(settings.data_dir) / f"{source.source_id}.secret"
        )
        runtime = open_runtime(settings)
        try:
            verify_digests(runtime, ProgressStore(runtime.directory.db, source.source_id), secret)
        finally:
            runtime.close()
    return done
