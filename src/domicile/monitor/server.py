"""The monitor's HTTP endpoints: `GET /alerts`, `GET /checkpoints`, `POST /add-checkpoint`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from domicile.monitor.state import MonitorState
from domicile.monitor.witness import Answer, Witness

MAX_BODY = 1 << 20


def make_server(host: str, port: int, state: MonitorState, witness: Witness) -> ThreadingHTTPServer:
    """Build (not start) the server; `serve_forever` it in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # alerts are the monitor's log, not access lines

        def _send(self, answer: Answer) -> None:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

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
