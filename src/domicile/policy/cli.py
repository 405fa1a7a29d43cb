"""`domicile policy validate|test`: check policy files and run policy test cases.

Both commands load the policies, schema and configuration exactly as the gateway does
(built-in defaults for what is not given) and fail with one line, ``error: …``, and exit
status 1 on any fault.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from domicile.errors import DomicileError
from domicile.policy.engine import PolicyEngine
from domicile.policy.record import ledger_record
from domicile.policy.testcases import load_test_cases, parse_test_cases, run_test_cases
from domicile.residency.topology import Topology, load_topology

__all__ = ["policy"]

F = TypeVar("F", bound=Callable[..., Any])
_FILE = click.Path(path_type=Path, dir_okay=False, exists=False)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    raise click.exceptions.Exit(1)


def _policy_options(func: F) -> F:
    """The `--policies`, `--schema` and `--config` options shared by both commands."""
    func = click.option(
        "--config",
        type=_FILE,
        default=None,
        help="policy configuration TOML (default: the built-in one)",
    )(func)
    func = click.option(
        "--schema",
        type=_FILE,
        default=None,
        help="Cedar schema file (default: the built-in schema)",
    )(func)
    return click.option(
        "--policies",
        type=_FILE,
        default=None,
        help="Cedar policy file (default: the built-in policy set)",
    )(func)


def _load(policies: Path | None, schema: Path | None, config: Path | None) -> PolicyEngine:
    try:
        return PolicyEngine.load(policies, schema=schema, config=config)
    except DomicileError as exc:
        _fail(str(exc))


@click.group("policy")
def policy() -> None:
    """Check and test the Cedar policies that decide every access."""


@policy.command("validate")
@_policy_options
def validate(policies: Path | None, schema: Path | None, config: Path | None) -> None:
    """Validate policies against the schema and print the policy hash."""
    engine = _load(policies, schema, config)
    try:
        ledger_record(engine.snapshot.version_record())  # the gateway could record it
    except DomicileError as exc:
        _fail(str(exc))
    count = len(engine.snapshot.ids)
    click.echo(f"ok: {count} policies validate against the schema")
    click.echo(f"policy hash: {engine.policy_hash}")


@policy.command("test")
@click.argument("file", type=_FILE, required=False)
@_policy_options
@click.option(
    "--topology",
    type=_FILE,
    default=None,
    help="topology TOML that places countries and regions (default: the built-in one)",
)
def test(
    file: Path | None,
    policies: Path | None,
    schema: Path | None,
    config: Path | None,
    topology: Path | None,
) -> None:
    """Run a TOML or JSON file of test cases (default: the built-in default_tests.toml)."""
    engine = _load(policies, schema, config)
    try:
        places: Topology = load_topology(topology)
        if file is None:
            resource = resources.files(__package__ or "domicile.policy") / "default_tests.toml"
            text = resource.read_text(encoding="utf-8")
            cases = parse_test_cases(text, places, source="default_tests.toml")
        else:
            cases = load_test_cases(file, places)
    except DomicileError as exc:
        _fail(str(exc))
    results = run_test_cases(engine, cases)
    for result in results:
        mark = "pass" if result.passed else "FAIL"
        click.echo(f"{mark}  {result.case.name}: {result.message}")
    failed = sum(1 for result in results if not result.passed)
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise click.exceptions.Exit(1)
