"""The monitor's console page, served by its stdlib server."""

from __future__ import annotations

from pathlib import Path

import httpx

from domicile.monitor.alerts import Alert
from domicile.monitor.server import make_server, serve_in_thread
from domicile.monitor.state import MonitorState
from domicile.monitor.witness import Witness, load_or_create_cosigner


def test_monitor_console_shows_logs_and_alerts_with_evidence(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "monitor.db")
    state.add_checkpoint("domicile.local/log/eu-ie", 5, b"\x01" * 32, "note", "gateway")
    state.add_alert(
        Alert("unknown-build", "domicile.local/log/eu-ie", "build `abc` is not approved",
              key="abc", evidence={"digest": "abc", "entry": 7}, index=7)
    )  # fmt: skip
    cosigner = load_or_create_cosigner(tmp_path, "monitor.local/witness")
    server = make_server("127.0.0.1", 0, state, Witness(state, cosigner, {}, lambda a: 0))
    serve_in_thread(server)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        page = httpx.get(url + "/console", follow_redirects=True)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert "unknown-build" in page.text
        assert "&#34;digest&#34;: &#34;abc&#34;" in page.text or '"digest": "abc"' in page.text
        assert "domicile.local/log/eu-ie" in page.text
        assert "monitor.local/witness" in page.text
        assert httpx.get(url + "/console/static/console.css").status_code == 200
    finally:
        server.shutdown()
        server.server_close()
        state.close()
