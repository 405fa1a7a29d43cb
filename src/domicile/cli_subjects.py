"""`domicile subjects …`: the Python client from the shell, against a running gateway."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from domicile.client import Client
from domicile.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """The --url, --token and --token-file options of every client command."""
    func = click.option(
        "--url",
        envvar="DOMICILE_URL",
        default="http://127.0.0.1:8080",
        show_default=True,
        help="gateway url ($DOMICILE_URL)",
    )(func)
    func = click.option(
        "--token", envvar="DOMICILE_TOKEN", default=None, help="bearer token ($DOMICILE_TOKEN)"
    )(func)
    return click.option(
        "--token-file",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help="file holding the bearer token",
    )(func)


def open_client(
    url: str, token: str | None, token_file: Path | None, *, required: bool = True
) -> Client:
    """A client for the given gateway and token (public log reads need no token)."""
    if token_file is not None:
        token = token_file.read_text().strip()
    if not token and required:
        raise InvalidInput("give a token with --token, --token-file or $DOMICILE_TOKEN")
    return Client(url, token or "")


def _fields(pairs: tuple[str, ...], as_json: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if as_json:
        try:
            loaded = json.loads(as_json)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"--json is not valid json: {exc.msg.lower()}") from exc
        if not isinstance(loaded, dict):
            raise InvalidInput("--json must be a json object of fields")
        out.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"field `{name}` must be given as name=value")
        out[name] = None if value == "" else _scalar(value)
    return out


def _scalar(value: str) -> Any:
    # Numbers and booleans typed on a command line arrive as text; JSON decides.
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, int | float | bool | dict | list) else value


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group()
def subjects() -> None:
    """Register, read, update, export, relocate and erase subjects over the API."""


@subjects.command("register")
@click.option("--country", required=True, help="ISO 3166-1 alpha-2 code")
@click.option("--field", "pairs", multiple=True, help="name=value (repeatable)")
@click.option("--json", "as_json", default=None, help="fields as a JSON object")
@connection_options
def register(
    country: str,
    pairs: tuple[str, ...],
    as_json: str | None,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Register a person; prints their id and home region."""
    with open_client(url, token, token_file) as client:
        subject_id, region = client.register(country, _fields(pairs, as_json))
    _echo({"id": subject_id, "home_region": region})


@subjects.command("get")
@click.argument("subject_id")
@click.option("--purpose", required=True, help="declared purpose of the read")
@click.option("--fields", default=None, help="comma-separated field names (default: all)")
@connection_options
def get(
    subject_id: str,
    purpose: str,
    fields: str | None,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Read a subject's fields."""
    names = [f for f in fields.split(",") if f] if fields else None
    with open_client(url, token, token_file) as client:
        subject = client.get(subject_id, purpose=purpose, fields=names)
    _echo(subject.__dict__)


@subjects.command("update")
@click.argument("subject_id")
@click.option("--field", "pairs", multiple=True, help="name=value; name= removes the field")
@click.option("--json", "as_json", default=None, help="fields as a JSON object")
@click.option("--if-version", type=int, default=None, help="only if still at this version")
@connection_options
def update(
    subject_id: str,
    pairs: tuple[str, ...],
    as_json: str | None,
    if_version: int | None,
    url: str,
    token: str | None,
    token_file: Path | None,
) -> None:
    """Update fields of a subject."""
    with open_client(url, token, token_file) as client:
        version = client.update(subject_id, _fields(pairs, as_json), if_version=if_version)
    _echo({"id": subject_id, "version": version})


@subjects.command("export")
@click.argument("subject_id")
@connection_options
def export(subject_id: str, url: str, token: str | None, token_file: Path | None) -> None:
    """Print everything held about a subject."""
    with open_client(url, token, token_file) as client:
        _echo(client.export(subject_id).__dict__)


@subjects.command("relocate")
@click.argument("subject_id")
@click.option("--country", required=True, help="the subject's new country")
@connection_options
def relocate(
    subject_id: str, country: str, url: str, token: str | None, token_file: Path | None
) -> None:
    """Move a subject to the home region of its new country."""
    with open_client(url, token, token_file) as client:
        _echo({"id": subject_id, "home_region": client.relocate(subject_id, country)})


@subjects.command("erase")
@click.argument("subject_id")
@connection_options
def erase(subject_id: str, url: str, token: str | None, token_file: Path | None) -> None:
    """Erase a subject (its data key is destroyed)."""
    with open_client(url, token, token_file) as client:
        client.erase(subject_id)
    _echo({"id": subject_id, "erased": True})
