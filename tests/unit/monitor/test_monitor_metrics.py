"""The monitor's `GET /metrics`: progress and alerts an operator can alert on."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from domicile.monitor.alerts import Alert
from domicile.monitor.server import make_server, serve_in_thread
from domicile.monitor.state import MonitorState
from domicile.monitor.witness import Witness, load_or_create_cosigner

ORIGIN = "domicile.local/log/eu-ie"


def test_the_monitor_serves_its_witnessed_sizes_and_alerts_as_metrics(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "monitor.db")
    state.set_witnessed(ORIGIN, 12, b"\x01" * 32, "note", 0)
    for key in ("abc", "def"):
        state.add_alert(Alert("unknown-build", ORIGIN, f"build `{key}` is not approved", key=key))
    cosigner = load_or_create_cosigner(tmp_path, "monitor.local/witness")
    server = make_server("127.0.0.1", 0, state, Witness(state, cosigner, {}, lambda a: 0))
    serve_in_thread(server)
    try:
        response = httpx.get(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
    finally:
        server.shutdown()
        server.server_close()
        state.close()
    assert samples["domicile_monitor_witnessed_size", (("origin", ORIGIN),)] == 12
    severity = Alert("unknown-build", ORIGIN, "x", key="x").severity
    key = ("domicile_monitor_alerts_total", (("kind", "unknown-build"), ("severity", severity)))
    assert samples[key] == 2
    assert not any(name == "domicile_monitor_verified_size" for name, _ in samples)  # none yet
