"""`domicile ledger …` against a running gateway, and `domicile verify` offline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from domicile.cli_subjects import connection_options, open_client
from domicile.errors import InvalidInput, ProofError
from domicile.ledger.note import parse_verifier_key
from domicile.ledger.proof_bundle import verify_bundle


@click.group()
def ledger() -> None:
    """Read a region's log: checkpoint, verifier key, proof bundles, recent entries."""


@ledger.command("checkpoint")
@click.option("--region", required=True)
@connection_options
def checkpoint(region: str, url: str, token: str | None, token_file: Path | None) -> None:
    """Print the latest signed checkpoint."""
    with open_client(url, token, token_file, required=False) as client:
        click.echo(client.log_checkpoint(region), nl=False)


@ledger.command("key")
@click.option("--region", required=True)
@connection_options
def key(region: str, url: str, token: str | None, token_file: Path | None) -> None:
    """Print the log's verifier key (give it to `domicile verify --key`)."""
    with open_client(url, token, token_file, required=False) as client:
        click.echo(client.log_key(region))


@ledger.command("proof")
@click.option("--region", required=True)
@click.option("--index", type=int, required=True, help="entry index")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="write the bundle here (default: stdout)",
)
@connection_options
def proof(
    region: str, index: int, out: Path | None, url: str, token: str | None, token_file: Path | None
) -> None:
    """Export a C2SP tlog-proof bundle for one entry."""
    with open_client(url, token, token_file, required=False) as client:
        text = client.proof_bundle(region, index)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}")


@ledger.command("tail")
@click.option("--region", required=True)
@click.option("-n", "count", type=int, default=20, show_default=True)
@connection_options
def tail(region: str, count: int, url: str, token: str | None, token_file: Path | None) -> None:
    """Print the last entries of a region's log, one JSON object a line."""
    with open_client(url, token, token_file, required=False) as client:
        for item in client.log_entries(region, count=count):
            click.echo(json.dumps(item, sort_keys=True))


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--key", "vkey", required=True, help="the log's verifier key, or a file holding it")
def verify(bundle: Path, vkey: str) -> None:
    """Check a tlog-proof bundle offline: signature, inclusion, entry."""
    candidate = Path(vkey)
    text = candidate.read_text().strip() if candidate.is_file() else vkey.strip()
    verifier = parse_verifier_key(text)
    try:
        content = bundle.read_text()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"bundle `{bundle}` is not utf-8 text") from exc
    checkpoint, entry = verify_bundle(content, [verifier])
    if checkpoint.origin != verifier.name:
        raise ProofError(
            f"bundle is from log `{checkpoint.origin}`, not `{verifier.name}` named by the key"
        )
    click.echo(f"ok: entry included in {checkpoint.origin} at tree size {checkpoint.size}")
    click.echo(entry.decode("utf-8", "replace"))
