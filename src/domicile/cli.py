"""The `domicile` command: a thin shell over the runtime, the API and the client."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from domicile.errors import DomicileError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    # One line, whatever a library put in the message (libpq adds a tab-indented hint).
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(1)


def _settings(**overrides: Any) -> Any:
    from domicile.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        _fail(f"setting `{where}`: {first['msg'].lower()}")


class _Group(click.Group):
    """Turns Domicile errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DomicileError as exc:
            _fail(str(exc))


def data_dir_option(func: F) -> F:
    """The `--data-dir` option shared by local commands."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="data directory (default: $DOMICILE_DATA_DIR or ./domicile-data)",
    )(func)


@click.group(cls=_Group)
@click.version_option(package_name="domicile")
def main() -> None:
    """Domicile: personal data kept at home, reached only through the gateway."""


@main.command()
@data_dir_option
@click.option("--host", default=None, help="address to listen on (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port to listen on (default 8080)")
@click.option("--demo", is_flag=True, help="seed synthetic subjects and demo principals")
@click.option("--demo-subjects", type=int, default=3000, show_default=True)
def up(
    data_dir: Path | None, host: str | None, port: int | None, demo: bool, demo_subjects: int
) -> None:
    """Start the embedded default: every region in one process on SQLite files."""
    import uvicorn

    from domicile.api.app import create_app
    from domicile.bootstrap import ensure_admin, seed_demo
    from domicile.runtime import open_runtime

    settings = _settings(data_dir=data_dir, host=host, port=port)
    runtime = open_runtime(settings)
    try:
        token_file = ensure_admin(runtime)
        if demo:
            seed_demo(runtime, demo_subjects, echo=click.echo)
        url = f"http://{settings.host}:{settings.port}"
        click.echo(f"domicile is serving {len(runtime.topology.regions)} regions at {url}")
        click.echo(f"admin token: {token_file}")
        uvicorn.run(
            create_app(settings, runtime),
            host=settings.host,
            port=settings.port,
            log_level="warning",
        )
    finally:
        runtime.close()


@main.group()
def principals() -> None:
    """Manage principals (services and employees) and their tokens."""


@principals.command("add")
@click.option("--id", "principal_id", required=True)
@click.option("--entity", required=True, help="employing entity")
@click.option("--country", required=True, help="country of work (ISO 3166-1 alpha-2)")
@click.option("--role", "roles", multiple=True, required=True, help="role (repeatable)")
@data_dir_option
def principals_add(
    principal_id: str, entity: str, country: str, roles: tuple[str, ...], data_dir: Path | None
) -> None:
    """Add a principal; its token is printed on the last line, once."""
    from domicile.residency.topology import load_topology
    from domicile.runtime import open_principals

    settings = _settings(data_dir=data_dir)
    country = load_topology(settings.topology_file).normalise_country(country)
    store = open_principals(settings)
    try:
        token = store.add(principal_id, entity, country, set(roles))
    finally:
        store.db.close()
    click.echo(f"added principal {principal_id} ({','.join(sorted(roles))}, {country})")
    click.echo(token)


@principals.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def principals_list(data_dir: Path | None, as_json: bool) -> None:
    """List principals (never their tokens)."""
    from domicile.runtime import open_principals

    store = open_principals(_settings(data_dir=data_dir))
    try:
        rows = store.list()
    finally:
        store.db.close()
    if as_json:
        click.echo(json.dumps([{**p.__dict__, "roles": sorted(p.roles)} for p in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "entity", "country", "roles", "created", "revoked")
    for p in rows:
        table.add_row(
            p.id, p.entity, p.country, ",".join(sorted(p.roles)), p.created_at, p.revoked_at or ""
        )
    Console().print(table)


@principals.command("revoke")
@click.option("--id", "principal_id", required=True)
@data_dir_option
def principals_revoke(principal_id: str, data_dir: Path | None) -> None:
    """Revoke a principal and all its tokens, at once."""
    from domicile.runtime import open_principals

    store = open_principals(_settings(data_dir=data_dir))
    try:
        store.revoke(principal_id)
    finally:
        store.db.close()
    click.echo(f"revoked principal {principal_id}")


from domicile.cli_grants import grants  # noqa: E402  (client-side commands)
from domicile.cli_ledger import ledger, verify  # noqa: E402
from domicile.cli_migrate import migrate  # noqa: E402
from domicile.cli_monitor import monitor  # noqa: E402
from domicile.cli_subjects import subjects  # noqa: E402
from domicile.cli_transfers import transfers  # noqa: E402
from domicile.policy.cli import policy  # noqa: E402

main.add_command(subjects)
main.add_command(ledger)
main.add_command(policy)
main.add_command(grants)
main.add_command(migrate)
main.add_command(monitor)
main.add_command(verify)
main.add_command(transfers)

if __name__ == "__main__":  # pragma: no cover
    main()
