"""`domicile monitor`: the independent monitor (docs/monitor.md).

It imports only the monitor package, which imports only pure ledger and policy code.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from domicile.catalog.catalog import load_catalog
from domicile.monitor.alerts import LOG, Sink, log_line, webhook_sink
from domicile.monitor.client import LogClient
from domicile.monitor.pdf import print_pdf
from domicile.monitor.report import parse_time, write_report
from domicile.monitor.server import make_server, serve_in_thread
from domicile.monitor.service import STATE_FILE, Monitor, MonitorConfig
from domicile.monitor.state import MonitorState
from domicile.monitor.thresholds import Thresholds
from domicile.monitor.witness import Witness, load_or_create_cosigner


def _keys(values: tuple[str, ...]) -> list[str]:
    """Each value is a verifier key, or a file holding one key per line."""
    keys: list[str] = []
    for value in values:
        path = Path(value)
        if "+" not in value and path.exists():
            keys += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            keys.append(value)
    return keys


@click.group(invoke_without_command=True)
@click.option("--gateway", "gateway_url", help="the gateway's base url")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("monitor-data"))
@click.option(
    "--state-url",
    default=None,
    help="postgresql://…[?schema=NAME] for the state (default: monitor.db in --data-dir)",
)
@click.option("--log-key", "log_keys", multiple=True, help="a log verifier key, or a file of them")
@click.option("--approved-build", "builds", multiple=True, help="an approved gateway build digest")
@click.option("--port", type=int, default=None, help="serve /alerts and /add-checkpoint here")
@click.option("--host", default="127.0.0.1")
@click.option("--interval", type=float, default=5.0, help="seconds between rounds")
@click.option("--once", is_flag=True, help="one round, then exit (status 3 if it raised alerts)")
@click.option("--webhook", default=None, help="POST every alert as JSON to this url")
@click.option("--peer", "peers", multiple=True, help="another monitor's url: compare checkpoints")
@click.option("--witness-name", default="monitor.local/witness")
@click.option("--topology-file", type=click.Path(path_type=Path), default=None)
@click.option("--catalog-file", type=click.Path(path_type=Path), default=None)
@click.option("--denied-per-minute", type=int, default=Thresholds.denied_per_minute)
@click.option("--subjects-per-hour", type=int, default=Thresholds.subjects_per_hour)
@click.pass_context
def monitor(
    ctx: click.Context,
    gateway_url: str | None,
    data_dir: Path,
    state_url: str | None,
    log_keys: tuple[str, ...],
    builds: tuple[str, ...],
    port: int | None,
    host: str,
    interval: float,
    once: bool,
    webhook: str | None,
    peers: tuple[str, ...],
    witness_name: str,
    topology_file: Path | None,
    catalog_file: Path | None,
    denied_per_minute: int,
    subjects_per_hour: int,
) -> None:
    """Follow a gateway's region logs, witness checkpoints, replay decisions, raise alerts."""
    if ctx.invoked_subcommand is not None:
        return
    if not gateway_url or not log_keys:
        raise click.UsageError("--gateway and at least one --log-key are needed")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Alerts are the monitor's output; the HTTP client's per-request lines would bury them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sinks: list[Sink] = [log_line] + ([webhook_sink(webhook)] if webhook else [])
    config = MonitorConfig(
        data_dir, _keys(log_keys), builds, Thresholds(denied_per_minute, subjects_per_hour),
        topology_file, catalog_file, sinks, peers, state_url,
    )  # fmt: skip
    mon = Monitor(config, LogClient(gateway_url))
    server = None
    if port is not None:
        cosigner = load_or_create_cosigner(data_dir, witness_name)
        witness = Witness(mon.state, cosigner, mon.verifiers, mon.emit)
        server = make_server(host, port, mon.state, witness)
        serve_in_thread(server)
        click.echo(f"witness key: {cosigner.verifier().verifier_key}", err=True)
    try:
        raised = mon.run_once()
        while not once:
            time.sleep(interval)
            raised += _round(mon)
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
        mon.close()
    if once and raised:
        ctx.exit(3)


def _round(mon: Monitor) -> int:
    """One round of a long-running monitor: a failure is logged and the next round tries
    again (a gateway restarting, a full disk), instead of ending the monitor."""
    try:
        return mon.run_once()
    except Exception as exc:
        LOG.error(
            json.dumps({"event": "round-failed", "error": f"{type(exc).__name__}: {exc}"[:300]})
        )
        return 0


@monitor.command("witness-key")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("monitor-data"))
@click.option("--witness-name", default="monitor.local/witness")
def witness_key(data_dir: Path, witness_name: str) -> None:
    """Print the witness's cosignature verifier key (made on first use)."""
    click.echo(load_or_create_cosigner(data_dir, witness_name).verifier().verifier_key)


@monitor.command("report")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("monitor-data"))
@click.option("--from", "start", default=None, help="ISO 8601 start of the period (inclusive)")
@click.option("--to", "end", default=None, help="ISO 8601 end of the period (exclusive)")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output directory")
@click.option("--catalog-file", type=click.Path(path_type=Path), default=None)
@click.option("--state-url", default=None, help="the monitor's postgresql:// state url, if any")
@click.option("--pdf", is_flag=True, help="also print report.pdf (needs Chromium)")
def report(
    data_dir: Path,
    start: str | None,
    end: str | None,
    out: Path,
    catalog_file: Path | None,
    state_url: str | None,
    pdf: bool,
) -> None:
    """Write an audit report (report.json, report.html) from the monitor's state."""
    path = data_dir / STATE_FILE
    if state_url is None and not path.exists():
        raise click.UsageError(f"no monitor state at `{path}`")
    try:
        bounds = [parse_time(t) if t else None for t in (start, end)]
    except ValueError as exc:
        raise click.UsageError(f"--from/--to must be ISO 8601 times: {exc}") from exc
    state = MonitorState(state_url or path)
    try:
        made = write_report(state, load_catalog(catalog_file), out, bounds[0], bounds[1])
    finally:
        state.close()
    if pdf:
        print_pdf(out / "report.html", out / "report.pdf")
    entries = sum(r["entries_in_period"] for r in made["regions"].values())
    written = ", ".join(
        str(out / n) for n in ("report.json", "report.html", "report.pdf")[: 2 + pdf]
    )
    click.echo(f"{written}: {len(made['regions'])} logs, "
               f"{entries} entries, {len(made['alerts']['list'])} alerts")  # fmt: skip
