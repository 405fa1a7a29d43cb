"""The monitor's HTTP endpoints: `GET /alerts`, `GET /checkpoints`, `POST /add-checkpoint`,
`GET /metrics` (Prometheus), and its read-only console page (`GET /console/monitor`),
rendered by the pure `domicile.console.render` so the monitor stays independent of the
gateway."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from domicile.console.render import pretty_json, render, stylesheet
from domicile.monitor.metrics import CONTENT_TYPE as METRICS_TYPE
from domicile.monitor.metrics import exposition, registry_for
from domicile.monitor.state import MonitorState
from domicile.monitor.witness import Answer, Witness

MAX_BODY = 1 << 20
CONSOLE_ALERTS = 200  # newest alerts shown on the console page
HTML = "text/html; charset=utf-8"
CONSOLE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def console_page(state: MonitorState, witness: Witness) -> str:
    """The monitor's console page: logs verified, checkpoints, cosignatures, alerts."""
    seen = {
        origin: (int(n), int(ok or 0))
        for origin, n, ok in state.query(
            "SELECT origin, COUNT(*), SUM(consistent) FROM checkpoints GROUP BY origin"
        )
    }
    witnessed = {o: int(s) for o, s in state.query("SELECT origin, size FROM witnessed")}
    origins = sorted(
        {o for (o,) in state.query("SELECT origin FROM logs")} | set(seen) | set(witnessed)
    )
    verified = {o: (int(s), bytes(r).hex()) for o, s, r in state.query(
        "SELECT origin, size, root FROM logs")}  # fmt: skip
    logs = [
        {
            "origin": o,
            "size": verified.get(o, (0, ""))[0],
            "root": verified.get(o, (0, ""))[1],
            "seen": seen.get(o, (0, 0))[0],
            "consistent": seen.get(o, (0, 0))[1],
            "witnessed": witnessed.get(o, 0),
        }
        for o in origins
    ]
    rows = state.query(
        "SELECT id, time, kind, origin, severity, message, idx, evidence FROM alerts"
        " ORDER BY id DESC LIMIT ?",
        [CONSOLE_ALERTS],
    )
    alerts = [
        {"id": r[0], "time": r[1], "kind": r[2], "origin": r[3], "severity": r[4],
         "message": r[5], "index": r[6], "evidence": pretty_json(json.loads(r[7]))}
        for r in rows
    ]  # fmt: skip
    (count,) = state.query("SELECT COUNT(*) FROM alerts")[0]
    verifier = witness.cosigner.verifier()
    return render(
        "monitor.html", nav=(("monitor", "Monitor"),), current="monitor", principal=None,
        brand="Domicile monitor", logs=logs, alerts=alerts, alert_count=int(count),
        witness_name=verifier.name, witness_key=verifier.verifier_key,
    )  # fmt: skip


def make_server(host: str, port: int, state: MonitorState, witness: Witness) -> ThreadingHTTPServer:
    """Build (not start) the server; `serve_forever` it in a thread."""

    metrics = registry_for(state)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # alerts are the monitor's log, not access lines

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def _console(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            for name, value in {"Content-Type": content_type, **CONSOLE_HEADERS}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._send(Answer(200, "application/json", json.dumps(value).encode()))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path == "/alerts":
                after = int((query.get("after") or ["0"])[0] or 0)
                self._json(state.alerts(after))
            elif url.path == "/checkpoints":
                rows = state.query("SELECT origin, size, note FROM logs ORDER BY origin")
                self._json([{"origin": o, "size": s, "checkpoint": n} for o, s, n in rows])
            elif url.path == "/healthz":
                self._json({"status": "ok"})
            elif url.path == "/metrics":
                self._send(Answer(200, METRICS_TYPE, exposition(metrics)))
            elif url.path in ("/console", "/console/"):
                self.send_response(303)
                self.send_header("Location", "/console/monitor")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/console/monitor":
                self._console(console_page(state, witness).encode(), HTML)
            elif url.path == "/console/static/console.css":
                self._console(stylesheet(), "text/css")
            else:
                self._send(Answer(404, "text/plain", b"not found\n"))

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/add-checkpoint":
                self._send(Answer(404, "text/plain", b"not found\n"))
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(Answer(400, "text/plain", b"body missing or too large\n"))
                return
            self._send(witness.add_checkpoint(self.rfile.read(length)))

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve in a daemon thread; stop with `server.shutdown()`."""
    thread = threading.Thread(target=server.serve_forever, name="monitor-http", daemon=True)
    thread.start()
    return thread
