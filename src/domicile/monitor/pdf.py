"""The report as PDF: the HTML report printed by a headless Chromium.

Chromium lays out the same HTML a reader opens in a browser, so the PDF cannot drift
from it. Chromium is found as `DOMICILE_CHROMIUM`, or `chromium` / `chromium-browser`
on the PATH (Debian's package `chromium`); without one, `--pdf` fails with that advice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from domicile.errors import DomicileError

FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-pdf-header-footer",
)  # fmt: skip
"""No network, no profile of the user's: the report is a local, self-contained file."""


def find_chromium() -> str | None:
    """The Chromium binary to print with, if there is one."""
    named = os.environ.get("DOMICILE_CHROMIUM")
    if named:
        return named
    return shutil.which("chromium") or shutil.which("chromium-browser")


def print_pdf(html: Path, pdf: Path, *, timeout: float = 120.0) -> None:
    """Print `html` to `pdf`; DomicileError (one line) if it cannot."""
    binary = find_chromium()
    if binary is None:
        raise DomicileError(
            "a PDF needs Chromium: install Debian's `chromium` or set DOMICILE_CHROMIUM"
        )
    pdf.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="domicile-pdf-") as profile:
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf}"]
        try:
            subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                [*argv, html.resolve().as_uri()],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DomicileError(f"chromium could not print the report: {exc}") from exc
    if not pdf.exists() or pdf.read_bytes()[:5] != b"%PDF-":
        raise DomicileError(f"chromium did not write a PDF to `{pdf}`")
