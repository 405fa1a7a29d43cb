"""`domicile grants …`: just-in-time access through the API, from the shell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from domicile.cli_subjects import connection_options, open_client


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group()
def grants() -> None:
    """Request, list, approve, deny and revoke time-limited access."""


@grants.command("request")
@click.option("--region", required=True)
@click.option(
    "--category",
    "categories",
    multiple=True,
    required=True,
    help="restricted or allowable (repeatable)",
)
@click.option("--purpose", required=True)
@click.option("--justification", required=True)
@click.option("--minutes", type=int, default=60, show_default=True, help="how long it lasts")
@click.option("--subject", "subjects", multiple=True, help="subject id (repeatable; none: region)")
@connection_options
def request(
    region: str,
    categories: tuple[str, ...],
    purpose: str,
    justification: str,
    minutes: int,
    subjects: tuple[str, ...],
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """File a request; it needs approvals before it covers anything."""
    with open_client(url, token, token_file) as client:
        _echo(
            client.request_grant(
                region=region,
                categories=categories,
                purpose=purpose,
                justification=justification,
                duration_minutes=minutes,
                subjects=subjects,
            )
        )


@grants.command("list")
@click.option("--state", type=click.Choice(["pending", "approved", "denied", "revoked"]))
@connection_options
def list_grants(state: str | None, url: str, token: str | None, token_file: Path | None) -> None:
    """Grants you may see (overseers see all)."""
    with open_client(url, token, token_file) as client:
        _echo(client.grants(state=state))


def _step_command(step: str) -> click.Command:
    @click.command(step, help=f"{step.capitalize()} a grant.")
    @click.argument("grant_id")
    @connection_options
    def command(grant_id: str, url: str, token: str | None, token_file: Path | None) -> None:
        with open_client(url, token, token_file) as client:
            _echo(client.grant_step(grant_id, step))

    return command


for _step in ("approve", "deny", "revoke"):
    grants.add_command(_step_command(_step))
