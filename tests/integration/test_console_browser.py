"""The oversight console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

A real `domicile up --demo` and a real `domicile monitor --port` run as processes; the
gateway submits its checkpoints to the monitor's witness. The test logs in, opens every
page, approves a grant as two approvers and revokes it, follows an inclusion proof,
checks the figures shown against the API, and checks that a principal without rights
is refused. Each page's screenshot goes to `tests/integration/.screenshots/`, cleaned
at the start of the run and kept after it for a reviewer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent / ".screenshots"
EU_ENTITY = "Trusted Security Partner EU"
REGIONS = ("eu-ie", "eu-no", "us", "ap-sg")

pytestmark = pytest.mark.slow


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _domicile(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "domicile"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"process exited: {log.read_text()[-2000:]}")
    proc.kill()
    pytest.fail(f"{url} did not come up within 90 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@dataclass
class Deployment:
    gateway: str
    monitor: str
    tokens: dict[str, str]
    eu_subject: str

    def api(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def deployment(tmp_path: Path, chromium: Path) -> Iterator[Deployment]:
    """`domicile up --demo` witnessed by a `domicile monitor --port`, both real processes
    (only when there is a chromium to look at them: the `chromium` fixture)."""
    os.symlink(Path(sys.prefix), tmp_path / ".venv")
    monitor_dir = tmp_path / "monitor-data"
    witness_key = _domicile("monitor", "witness-key", "--data-dir", str(monitor_dir), cwd=tmp_path)
    gw_port, mon_port = _free_port(), _free_port()
    gateway, monitor = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{mon_port}"
    env = {
        **os.environ,
        "DOMICILE_WITNESSES": json.dumps([f"{monitor} {witness_key.strip()}"]),
        "DOMICILE_CHECKPOINT_INTERVAL": "0.5",
    }
    gw_log = tmp_path / "up.log"
    with gw_log.open("w") as sink:
        gw = subprocess.Popen(
            [str(Path(sys.executable).parent / "domicile"), "up", "--demo", "--demo-subjects",
             "400", "--port", str(gw_port)],
            cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    procs = [gw]
    try:
        _wait(gateway + "/healthz", gw, gw_log)
        keys = [httpx.get(f"{gateway}/v1/regions/{r}/log/key").text.strip() for r in REGIONS]
        mon_log = tmp_path / "monitor.log"
        args = [sys.executable, "-c", "from domicile.cli_monitor import monitor; monitor()",
                "--gateway", gateway, "--data-dir", str(monitor_dir), "--port", str(mon_port),
                "--interval", "1"]  # fmt: skip
        for key in keys:
            args += ["--log-key", key]
        with mon_log.open("w") as sink:
            mon = subprocess.Popen(args, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT)
        procs.append(mon)
        _wait(monitor + "/healthz", mon, mon_log)
        data = tmp_path / "domicile-data"
        tokens = {
            "admin": (data / "admin.token").read_text().strip(),
            "svc-eu": (data / "demo-tokens" / "svc-eu.token").read_text().strip(),
            "svc-us": (data / "demo-tokens" / "svc-us.token").read_text().strip(),
        }
        for pid, country, role in (
            ("approver-ie", "IE", "approver"),
            ("approver2-ie", "DE", "approver"),
            ("analyst-ie", "IE", "analyst"),
        ):
            out = _domicile("principals", "add", "--id", pid, "--entity", EU_ENTITY,
                            "--country", country, "--role", role, cwd=tmp_path)  # fmt: skip
            tokens[pid] = out.strip().splitlines()[-1]
        made = httpx.post(
            f"{gateway}/v1/subjects",
            json={"country": "DE", "fields": {"email": "browser.person@example.org"}},
            headers={"Authorization": f"Bearer {tokens['svc-eu']}"},
        )
        assert made.status_code == 201, made.text
        yield Deployment(gateway, monitor, tokens, made.json()["id"])
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture
def screenshots() -> Path:
    """The screenshot folder, emptied at the start of the run (kept afterwards)."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


def _number(text: str) -> int:
    return int(text.strip().replace(",", ""))


def _eventually(check: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check()  # type: ignore[operator]
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_console_in_a_real_browser(
    deployment: Deployment, screenshots: Path, tmp_path: Path, chromium: Path
) -> None:
    from playwright.sync_api import sync_playwright

    d = deployment
    # A denied cross-border read for the Flows page: a US service asks for an EU subject.
    denied = httpx.get(
        f"{d.gateway}/v1/subjects/{d.eu_subject}?fields=display_name&purpose=support",
        headers=d.api("svc-us"),
    )
    assert denied.status_code == 403
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            _login_and_overview(page, d, screenshots)
            _flows(page, d, screenshots)
            _access_and_proof(page, d, screenshots)
            _migration(page, d, screenshots, tmp_path)
            _logout(page)
            _grants(page, d, screenshots)
            _refused(page, d, screenshots)
            _monitor(page, d, screenshots)
        finally:
            browser.close()
    names = sorted(p.name for p in screenshots.iterdir())
    assert len(names) >= 10, names


def _login(page: object, d: Deployment, who: str) -> None:
    page.goto(f"{d.gateway}/console/login")  # type: ignore[attr-defined]
    page.fill("#token", d.tokens[who])  # type: ignore[attr-defined]
    page.click("#login")  # type: ignore[attr-defined]
    page.wait_for_selector("#who")  # type: ignore[attr-defined]
    assert page.locator("#who").inner_text().startswith(who)  # type: ignore[attr-defined]


def _logout(page: object) -> None:
    page.click("#logout")  # type: ignore[attr-defined]
    page.wait_for_selector("#token")  # type: ignore[attr-defined]


def _login_and_overview(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{d.gateway}/console")
    assert "/console/login" in page.url  # every page needs a login
    page.screenshot(path=shots / "01-login.png", full_page=True)
    page.fill("#token", "not-a-token")
    page.click("#login")
    assert page.locator("#error").inner_text() == "that token is not valid"
    page.screenshot(path=shots / "02-login-refused.png", full_page=True)
    _login(page, d, "admin")
    assert page.locator("h1").inner_text() == "Overview"
    regions = httpx.get(f"{d.gateway}/v1/regions", headers=d.api("admin")).json()
    assert sum(r["subjects"] for r in regions) == 401
    for region in regions:
        row = page.locator(f'#regions tr[data-region="{region["name"]}"]')
        assert _number(row.locator(".subjects").inner_text()) == region["subjects"]
        assert _number(row.locator(".ledger-size").inner_text()) > 0
    assert page.locator("#outside-count").inner_text() == "0"
    assert page.locator("#missing-count").inner_text() == "0"

    def cosigned() -> None:
        page.reload()
        text = page.locator('#regions tr[data-region="eu-ie"] .cosigned').inner_text()
        assert "monitor.local/witness" in text

    _eventually(cosigned)
    assert page.locator("#monitors a").get_attribute("href") == f"{d.monitor}/console"
    page.screenshot(path=shots / "03-overview.png", full_page=True)


def _flows(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    page.click("nav >> text=Flows")
    assert page.locator("h1").inner_text() == "Cross-border flows"
    assert _number(page.locator("#denied").inner_text()) >= 1
    row = page.locator("#flows tbody tr", has_text="US").first
    assert "eu-ie" in row.inner_text()
    assert "deny" in row.inner_text()
    page.fill("#from", "2001-01-01")
    page.fill("#to", "2001-01-31")
    page.click("#show")
    assert _number(page.locator("#denied").inner_text()) == 0
    page.goto(f"{d.gateway}/console/flows?from=2001-02-30")
    assert "YYYY-MM-DD" in page.locator("#error").inner_text()
    page.goto(f"{d.gateway}/console/flows")
    page.screenshot(path=shots / "04-flows.png", full_page=True)


def _access_and_proof(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    page.click("nav >> text=Access")
    page.select_option("#region", "eu-ie")
    page.fill("#principal", "svc-us")
    page.click("#find")
    principals = page.locator("#decisions td.principal").all_inner_texts()
    assert principals
    assert set(principals) == {"svc-us"}
    assert "deny" in page.locator("#decisions tbody tr").first.inner_text()
    page.screenshot(path=shots / "05-access.png", full_page=True)
    index = page.locator("#decisions tbody tr").first.get_attribute("data-index")
    page.locator("#decisions a.proof").first.click()
    assert page.locator("#verdict").inner_text().startswith("Verifies")
    entry = json.loads(page.locator("#entry").inner_text())
    assert entry["kind"] == "decision"
    assert entry["input"]["principal"]["id"] == "svc-us"
    served = httpx.get(f"{d.gateway}/v1/regions/eu-ie/log/proof/inclusion?index={index}").json()
    assert served["index"] == int(index or -1)
    assert page.locator("#path li").count() >= 1
    assert "domicile.local/log/eu-ie" in page.locator("#checkpoint").inner_text()
    page.screenshot(path=shots / "05-proof.png", full_page=True)


def _migration(page, d: Deployment, shots: Path, work: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{d.gateway}/console/migration")
    assert page.locator("#no-sources").count() == 1
    # A legacy store moved home beside the running gateway, as the README's tour does it.
    source = "sqlite:///legacy-sg.db"
    _domicile("migrate", "demo-source", "--out", source, "--rows", "120", "--store", "singapore",
              "--mapping-out", "legacy-sg.toml", cwd=work)  # fmt: skip
    _domicile("migrate", "run", "--source", source, "--mapping", "legacy-sg.toml",
              "--no-progress", cwd=work)  # fmt: skip
    text = _domicile("migrate", "status", "--source", source, "--mapping", "legacy-sg.toml",
                     cwd=work)  # fmt: skip
    status = dict(line.split(": ", 1) for line in text.strip().splitlines())
    page.reload()
    card = page.locator("section.source").first
    moved = _number(card.locator(".moved").inner_text())
    assert moved == int(status["moved"]) > 0
    assert _number(card.locator(".quarantined").inner_text()) == int(status["quarantined"])
    assert card.locator(".signature").inner_text() == "verifies"
    page.screenshot(path=shots / "06-migration.png", full_page=True)


def _grants(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    body = {
        "region": "eu-ie",
        "subjects": [d.eu_subject],
        "categories": ["restricted"],
        "purpose": "security",
        "justification": "incident 7",
        "duration_minutes": 60,
    }
    made = httpx.post(f"{d.gateway}/v1/grants", json=body, headers=d.api("analyst-ie"))
    assert made.status_code == 201, made.text
    grant = made.json()["id"]
    row = f'#pending tr[data-grant="{grant}"]'
    _login(page, d, "approver-ie")
    page.click("nav >> text=Grants")
    assert "analyst-ie" in page.locator(row).inner_text()
    page.screenshot(path=shots / "07-grants-pending.png", full_page=True)
    page.locator(f"{row} button.approve").click()
    assert "approve" in page.locator("#done").inner_text()
    assert "1 of 2" in page.locator(row).inner_text()
    _logout(page)
    _login(page, d, "approver2-ie")
    page.click("nav >> text=Grants")
    page.locator(f"{row} button.approve").click()
    active = f'#active tr[data-grant="{grant}"]'
    assert "approver-ie" in page.locator(active).inner_text()
    state = httpx.get(f"{d.gateway}/v1/grants/{grant}", headers=d.api("analyst-ie")).json()
    assert state["state"] == "approved"
    page.screenshot(path=shots / "08-grants-approved.png", full_page=True)
    page.locator(f"{active} button.revoke").click()
    assert page.locator(active).count() == 0
    state = httpx.get(f"{d.gateway}/v1/grants/{grant}", headers=d.api("analyst-ie")).json()
    assert state["state"] == "revoked"
    page.screenshot(path=shots / "09-grants-revoked.png", full_page=True)
    _logout(page)


def _refused(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    _login(page, d, "svc-eu")
    page.goto(f"{d.gateway}/console/migration")
    assert re.match(r"403 · Not allowed", page.locator("#error-title").inner_text())
    assert "svc-eu" in page.content()
    page.screenshot(path=shots / "10-refused.png", full_page=True)
    assert "@example.org" not in page.content()
    _logout(page)


def _monitor(page, d: Deployment, shots: Path) -> None:  # type: ignore[no-untyped-def]
    def verified() -> None:
        page.goto(f"{d.monitor}/console")
        row = page.locator('#logs tr[data-origin="domicile.local/log/eu-ie"]')
        assert _number(row.locator(".verified").inner_text()) > 0
        assert _number(row.locator(".cosigned").inner_text()) > 0
        assert page.locator("details.alert").count() >= 1

    _eventually(verified, 60)
    assert "unknown-build" in page.content()  # no build was approved: the monitor says so
    page.locator("details.alert summary").first.click()
    assert "digest" in page.locator("details.alert pre").first.inner_text()
    page.screenshot(path=shots / "11-monitor.png", full_page=True)
