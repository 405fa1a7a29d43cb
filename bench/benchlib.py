"""Helpers shared by the benchmark scripts: wrk, server processes, medians, output.

Nothing here asserts a timing: the scripts print figures and ratios against a baseline
measured in the same run (see /work/shared/DESIGN.md, "Benchmarks are not tests").
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PG_DSN_ENV = "DOMICILE_BENCH_PG_DSN"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results (table or JSON)."""
    print(message, file=sys.stderr, flush=True)


def clean_domicile_env() -> None:
    """Drop DOMICILE_* settings from this process (and so from its children).

    A benchmark must run on the settings it builds itself, not on whatever
    DOMICILE_STORAGE_URL or DOMICILE_TOPOLOGY_FILE happens to be exported.
    """
    for name in list(os.environ):
        if name.startswith("DOMICILE_") and name != PG_DSN_ENV:
            del os.environ[name]


def require_wrk() -> str:
    """Return the path of wrk, or exit with a clear message."""
    path = shutil.which("wrk")
    if path is None:
        print(
            "error: the load generator `wrk` is not installed (or not on PATH).\n"
            "       Install it with:  apt-get install wrk",
            file=sys.stderr,
        )
        sys.exit(2)
    return path


def wrk_version(wrk: str) -> str:
    """The first line wrk prints about itself."""
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def median(values: Sequence[float]) -> float:
    """Median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> float:
    """a / b, or NaN when b is zero."""
    return a / b if b else float("nan")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (the machine is shared: load matters)."""
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }


# -- wrk ----------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """What one wrk run reported."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when every response was 2xx/3xx and no socket error occurred."""
        return self.non_2xx == 0 and not any(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY_LINE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)


def parse_wrk(text: str) -> WrkResult:
    """Parse wrk's text output (run with --latency for the percentiles)."""
    latencies = {
        m.group(1): float(m.group(2)) * _UNITS_MS[m.group(3)] for m in _LATENCY_LINE.finditer(text)
    }
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if requests is None or rps is None or "50" not in latencies or "99" not in latencies:
        raise ValueError(f"cannot parse wrk output:\n{text}")
    non_2xx = _NON_2XX.search(text)
    socket_errors = _SOCKET.search(text)
    return WrkResult(
        requests=int(requests.group(1)),
        seconds=float(requests.group(2)) * _UNITS_MS[requests.group(3)] / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=latencies["50"],
        p99_ms=latencies["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=(
            dict(
                zip(
                    ("connect", "read", "write", "timeout"),
                    (int(g) for g in socket_errors.groups()),
                    strict=True,
                )
            )
            if socket_errors
            else {}
        ),
    )


def run_wrk(
    wrk: str,
    url: str,
    *,
    threads: int,
    connections: int,
    seconds: float,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
    timeout_s: int = 10,
) -> WrkResult:
    """Run wrk once, bounded in time, and parse what it printed."""
    duration = max(1, round(seconds))
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={timeout_s}s",
        "--latency",
    ]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=duration + timeout_s + 30
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"wrk did not finish in time: {' '.join(cmd[:-1])} …") from exc
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    return parse_wrk(out.stdout)


# -- HTTP checks (stdlib only, so no client library's cost or quirks are in the way) ------


def http_json(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: object | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any]:
    """One request; return (status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        status = exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# -- servers --------------------------------------------------------------------------------


@dataclass
class Server:
    """A uvicorn server started by bench/serve.py in its own process."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        """The end of what the server printed."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def server(
    name: str, serve_args: Sequence[str], *, workdir: Path, ready_timeout: float = 30.0
) -> Iterator[Server]:
    """Start `python bench/serve.py ARGS --port P`, wait until /healthz answers, stop it after."""
    port = free_port()
    log_path = workdir / f"{name}-server.log"
    cmd = [sys.executable, str(BENCH_DIR / "serve.py"), *serve_args, "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    srv = Server(name, port, process, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} server exited with {process.returncode}:\n{srv.log_tail()}"
                )
            try:
                status, _ = http_json("GET", f"{srv.base}/healthz", timeout=1.0)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} server not ready in {ready_timeout:.0f} s")
            time.sleep(0.1)
        yield srv
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def workdir(keep: bool, parent: Path | None = None) -> Iterator[Path]:
    """A temporary directory (in `parent`) for data and logs; removed after unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix="domicile-bench-", dir=parent))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# -- output ---------------------------------------------------------------------------------


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
            for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def fmt(value: float, digits: int = 0) -> str:
    """A number for a table."""
    if value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


# -- memory and child processes ---------------------------------------------------------------


def rss_kib(key: str = "VmRSS", pid: int | str = "self") -> int:
    """VmRSS (or VmHWM, the peak) of a process in KiB; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time a process has used so far, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(script: str, flag: str, name: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """Run `python SCRIPT FLAG NAME --ctx JSON` in a fresh interpreter (so its peak memory
    is its own) and return the JSON it printed."""
    cmd = [sys.executable, script, flag, name, "--ctx", json.dumps(ctx)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout))


def print_child_result(result: dict[str, Any]) -> None:
    """A child's last act: print its result with its own peak memory.

    ru_maxrss survives fork+exec on Linux (a child starts at its parent's peak), so the
    peak shown is VmHWM, which starts afresh with the new program; both are kept.
    """
    import resource

    result["peak_rss"] = rss_kib("VmHWM")
    result["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps(result))
