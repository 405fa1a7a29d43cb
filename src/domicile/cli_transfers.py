"""`domicile transfers …`: destinations, agreements, exports and token resolution, through
the API (administrators manage; officers and services export; officers re-identify)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from domicile.cli_subjects import connection_options, open_client
from domicile.errors import InvalidInput


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _terms(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"cannot read agreement terms `{path}`: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"agreement terms `{path}` must be a json object")
    return data


@click.group()
def transfers() -> None:
    """Transfer agreements, destinations, dataset exports and re-identification."""


@transfers.command("destinations")
@connection_options
def destinations(url: str, token: str | None, token_file: Path | None) -> None:
    """List recipient entities and their trust status."""
    with open_client(url, token, token_file) as client:
        _echo(client.destinations())


@transfers.command("destination")
@click.argument("entity")
@click.option("--country", required=True, help="ISO 3166-1 alpha-2")
@click.option("--status", type=click.Choice(["trusted", "untrusted", "suspended"]), required=True)
@click.option("--note", default="")
@connection_options
def destination(
    entity: str,
    country: str,
    status: str,
    note: str,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Register a recipient entity, or change its country, status or note."""
    with open_client(url, token, token_file) as client:
        _echo(client.put_destination(entity, country=country, status=status, note=note))


@transfers.command("agreements")
@click.option("--id", "agreement_id", default=None, help="show every version of one")
@connection_options
def agreements(
    agreement_id: str | None, url: str, token: str | None, token_file: Path | None
) -> None:
    """List agreements (newest versions), or every version of one."""
    with open_client(url, token, token_file) as client:
        _echo(client.agreement_versions(agreement_id) if agreement_id else client.agreements())


@transfers.command("agree")
@click.argument("terms", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--amend", "if_version", type=int, default=None, help="amend from this version")
@connection_options
def agree(
    terms: Path, if_version: int | None, url: str, token: str | None, token_file: Path | None
) -> None:
    """Create an agreement from a JSON file of terms, or amend one (`--amend VERSION`)."""
    body = _terms(terms)
    with open_client(url, token, token_file) as client:
        if if_version is None:
            _echo(client.create_agreement(body))
        else:
            _echo(client.amend_agreement(body, if_version=if_version))


@transfers.command("terminate")
@click.argument("agreement_id")
@click.option("--version", "if_version", type=int, required=True, help="the version seen")
@connection_options
def terminate(
    agreement_id: str, if_version: int, url: str, token: str | None, token_file: Path | None
) -> None:
    """End an agreement at once."""
    with open_client(url, token, token_file) as client:
        _echo(client.terminate_agreement(agreement_id, if_version=if_version))


@transfers.command("export")
@click.option("--region", required=True)
@click.option("--agreement", required=True)
@click.option("--field", "fields", multiple=True, help="field to send (default: the agreement's)")
@click.option("--subject", "subjects", multiple=True, help="subject id (default: the region)")
@click.option("--k", type=int, default=None, help="k-anonymity to require (at least the minimum)")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@connection_options
def export(
    region: str,
    agreement: str,
    fields: tuple[str, ...],
    subjects: tuple[str, ...],
    k: int | None,
    out: Path,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Export a region's subjects under an agreement to an NDJSON file, with progress."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    partial = out.with_name(out.name + ".partial")
    with open_client(url, token, token_file) as client, Progress(*columns) as bar:
        task = bar.add_task("exporting (checking k-anonymity first)", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None, description="receiving")

        try:
            with partial.open("wb") as handle:
                result = client.export_dataset(
                    handle, region=region, agreement=agreement,
                    fields=fields or None, subjects=subjects or None, k=k, progress=progress,
                )  # fmt: skip
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(out)
    _echo({**result, "out": str(out)})


@transfers.command("resolve")
@click.option("--region", required=True)
@click.option("--agreement", required=True, help="the agreement the token was issued under")
@click.option("--field", required=True)
@click.option("--purpose", required=True, type=click.Choice(["security", "legal"]))
@click.argument("token_value", metavar="TOKEN")
@connection_options
def resolve(
    region: str,
    agreement: str,
    field: str,
    purpose: str,
    token_value: str,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Resolve a token in its home region (in-region officers of the security entity)."""
    with open_client(url, token, token_file) as client:
        value = client.resolve_token(
            region, token=token_value, field=field, agreement=agreement, purpose=purpose
        )
    _echo({"region": region, "field": field, "value": value})
