"""`domicile migrate …`: move a legacy store into the home vaults, with verified deletion."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from domicile.errors import ConfigError, DomicileError

F = TypeVar("F", bound=Callable[..., Any])


class _MigrateGroup(click.Group):
    """Turns Domicile errors into one line on stderr and exit status 1 (also when run alone)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomicileError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)  # one line
            sys.exit(1)


def _settings(data_dir: Path | None) -> Any:
    from domicile.settings import Settings

    try:
        overrides: dict[str, Any] = {} if data_dir is None else {"data_dir": data_dir}
        return Settings(**overrides)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise ConfigError(f"setting `{where}` is invalid") from exc


def source_options(func: F) -> F:
    """`--source`, `--mapping` and `--data-dir`, shared by plan, run, status and verify."""
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="data directory (default: $DOMICILE_DATA_DIR)",
    )(func)
    func = click.option(
        "--mapping",
        "mapping_file",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="mapping TOML: table, id and country columns, column = field",
    )(func)
    return click.option(
        "--source", required=True, help="legacy store: sqlite:///file.db or postgresql://…?schema=s"
    )(func)


@contextmanager
def _source(source_url: str, mapping_file: Path, settings: Any) -> Iterator[Any]:
    from domicile.catalog.catalog import load_catalog
    from domicile.migrate.mapping import load_mapping
    from domicile.migrate.source import LegacySource

    mapping = load_mapping(mapping_file, load_catalog(settings.catalog_file))
    source = LegacySource(source_url, mapping)
    try:
        yield source
    finally:
        source.close()


@click.group(cls=_MigrateGroup)
def migrate() -> None:
    """Move legacy plaintext stores into the home vaults, with a deletion certificate."""


@migrate.command("plan")
@source_options
@click.option("--show", type=int, default=20, show_default=True, help="quarantined rows listed")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def plan(source: str, mapping_file: Path, data_dir: Path | None, show: int, as_json: bool) -> None:
    """Count rows per destination region and list invalid rows; nothing changes."""
    from domicile.catalog.catalog import load_catalog
    from domicile.migrate.classify import Classifier, Placement
    from domicile.residency.topology import load_topology

    settings = _settings(data_dir)
    regions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    listed: list[tuple[str, str]] = []
    with _source(source, mapping_file, settings) as legacy:
        classifier = Classifier(
            legacy.mapping,
            load_topology(settings.topology_file),
            load_catalog(settings.catalog_file),
            settings.max_field_bytes,
        )
        for page in legacy.pages(5000):
            for item in classifier.classify_all(page):
                if isinstance(item, Placement):
                    regions[item.region] += 1
                    continue
                reasons[item.reason] += 1
                if len(listed) < show:
                    listed.append((item.key, item.reason))
    result = {
        "source": legacy.label,
        "to_move": dict(sorted(regions.items())),
        "quarantine": dict(sorted(reasons.items())),
        "quarantine_preview": listed,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"source {legacy.label}")
    for region, count in sorted(regions.items()):
        click.echo(f"  move {count:>9} rows to {region}")
    for reason, count in sorted(reasons.items()):
        click.echo(f"  quarantine {count:>9} rows: {reason}")
    for key, reason in listed:
        click.echo(f"    row {key}: {reason}")


def _progress_bar(total: int, enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("migrating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8} rows/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


@migrate.command("run")
@source_options
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=10_000, show_default=True)
@click.option("--max-rows-per-second", type=click.FloatRange(min=1), default=None)
@click.option(
    "--inline",
    is_flag=True,
    help="prepare pages in this process (default: preparing processes, given 2+ CPUs)",
)
@click.option(
    "--preparers",
    type=click.IntRange(1, 64),
    default=None,
    help="preparing processes (default: 2 given 2+ CPUs; 1 holds less memory)",
)
@click.option(
    "--operator",
    default="domicile-migrate",
    show_default=True,
    help="who runs the migration, as the ledger names them",
)
@click.option("--no-progress", is_flag=True, help="no progress bar")
def run(
    source: str,
    mapping_file: Path,
    data_dir: Path | None,
    batch_size: int,
    max_rows_per_second: float | None,
    inline: bool,
    preparers: int | None,
    operator: str,
    no_progress: bool,
) -> None:
    """Move every valid row home, delete it at the source, and issue the certificate."""
    from domicile.migrate.service import run_migration

    settings = _settings(data_dir)
    with _source(source, mapping_file, settings) as legacy:
        total = legacy.count_live()
        with _progress_bar(total, not no_progress and sys.stderr.isatty()) as bar:
            task = bar.add_task("rows", total=total, rate="-")
            report, cert_path = run_migration(
                settings,
                legacy,
                batch_size=batch_size,
                max_rate=max_rows_per_second,
                operator=operator,
                on_rows=lambda n, rate: bar.update(task, advance=n, rate=f"{rate:,.0f}"),
                preparing_process=False if inline else None,
                preparers=preparers,
            )
    for region, count in sorted(report.per_region.items()):
        click.echo(f"moved {count} rows to {region}")
    click.echo(
        f"moved {report.moved} rows, quarantined {report.quarantined},"
        f" recovered {report.recovered_pages} interrupted pages"
    )
    click.echo(f"certificate: {cert_path}")


@migrate.command("status")
@source_options
def status(source: str, mapping_file: Path, data_dir: Path | None) -> None:
    """Show what was moved, what is in flight, what is quarantined and what is left."""
    from domicile.migrate.service import migration_status

    settings = _settings(data_dir)
    with _source(source, mapping_file, settings) as legacy:
        for name, value in migration_status(settings, legacy).items():
            click.echo(f"{name}: {value}")


@migrate.command("verify")
@source_options
@click.option(
    "--certificate",
    "cert_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="certificate (default: the data directory's)",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="certificate verifier key (default: the data directory's)",
)
@click.option("--deep", is_flag=True, help="also open every moved record and check its digest")
def verify(
    source: str,
    mapping_file: Path,
    data_dir: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    deep: bool,
) -> None:
    """Check the certificate against the ledgers and a rescan of the source."""
    from domicile.migrate.service import verify_migration

    settings = _settings(data_dir)
    with _source(source, mapping_file, settings) as legacy:
        done = verify_migration(settings, legacy, cert_file, key_file, deep=deep)
    click.echo(
        f"ok: {done.batches} batches, {done.moved} rows in the ledgers and gone from the"
        f" source; {done.live_rows} live rows left, all quarantined"
    )


@migrate.command("demo-source")
@click.option("--out", required=True, help="sqlite:///legacy.db or postgresql://…?schema=s")
@click.option("--rows", type=click.IntRange(0), default=10_000, show_default=True)
@click.option(
    "--store", type=click.Choice(["singapore", "us"]), default="singapore", show_default=True
)
@click.option(
    "--mapping-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="where to write the mapping (default: mapping-<store>.toml)",
)
@click.option("--seed", type=int, default=None)
def demo_source(
    out: str, rows: int, store: str, mapping_out: Path | None, seed: int | None
) -> None:
    """Create a synthetic legacy store of (mostly EU) users, some rows broken on purpose."""
    from domicile.migrate.demo_source import create_demo_source

    mapping = create_demo_source(out, rows, store, seed)
    target = mapping_out or Path(f"mapping-{store}.toml")
    target.write_text(mapping)
    click.echo(f"wrote {rows} legacy rows ({store}) and mapping {target}")
