"""The gateway console's routes (`/console/...`), mounted by `api.app` next to the API.

Login posts a bearer token; the session cookie (HttpOnly, SameSite=Strict) holds only a
random id. Every request authenticates the session's token again through the gateway,
and every POST form carries the session's CSRF token. Errors become an HTML page with
the status the API would give (`api.problems.status_for`); messages are the errors'
own, which never hold personal data.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from domicile.api.problems import status_for
from domicile.console import views
from domicile.console.index import Filters
from domicile.console.render import flow_diagram, region_diagram, render, stylesheet
from domicile.console.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    is_same_secret,
    new_secret,
)
from domicile.errors import AccessDenied, AuthenticationError, DomicileError, InvalidInput
from domicile.principals.store import Principal
from domicile.runtime import Runtime

router = APIRouter(prefix="/console", include_in_schema=False)
log = logging.getLogger("domicile.console")

MAX_FORM = 8192
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
}
NAV = (
    ("overview", "Overview"),
    ("flows", "Flows"),
    ("access", "Access"),
    ("grants", "Grants"),
    ("migration", "Migration"),
)
_setup = threading.Lock()
_COUNTRY = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2, as agreements name destinations


def _console(request: Request) -> views.Console:
    state = request.app.state
    with _setup:
        console = getattr(state, "console", None)
        if console is None:
            runtime: Runtime = state.runtime
            console = state.console = views.Console(runtime)
    return console


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _redirect("/console/login?next=" + quote(target, safe=""))


def _page(
    request: Request, template: str, principal: Principal, session: Session, **values: Any
) -> dict[str, Any]:
    return {
        "template": template,
        "principal": principal,
        "csrf": session.csrf,
        "nav": NAV,
        "current": template.removesuffix(".html"),
        **values,
    }


def _guarded(
    request: Request,
    build: Callable[[views.Console, Principal, Session], dict[str, Any] | Response],
) -> Response:
    """Run a page for a logged-in principal; errors become an HTML page with its status."""
    console = _console(request)
    session = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return _to_login(request)
    try:
        principal = console.runtime.gateway.authenticate(session.token)
    except AuthenticationError:
        console.sessions.close(session.id)  # revoked since login: the session ends too
        return _to_login(request)
    try:
        page = build(console, principal, session)
    except DomicileError as exc:
        status = status_for(exc)
        if status >= 500:  # the message is ours and carries no personal data
            log.error("%s on console %s: %s", exc.code, request.url.path, exc)
        return _html(
            render(
                "error.html", principal=principal, csrf=session.csrf, nav=NAV, current="",
                status=status, title=_title(status), message=str(exc),
            ),
            status,
        )  # fmt: skip
    if isinstance(page, Response):
        return page
    status = int(page.pop("status", 200))
    return _html(render(page.pop("template"), **page), status)


def _title(status: int) -> str:
    return {
        400: "That request is not valid",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
    }.get(status, "Something went wrong")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise InvalidInput("form is too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("form is not valid") from exc
    return {k: v[0] for k, v in parsed.items()}


def _safe_next(target: str | None) -> str:
    # Only paths inside the console: never an open redirect.
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return "/console/overview"


# -- assets, login, logout ----------------------------------------------------------------


@router.get("/static/console.css")
def css() -> Response:
    """The stylesheet."""
    return Response(stylesheet(), media_type="text/css", headers={"Cache-Control": "no-cache"})


@router.get("")
@router.get("/")
def root() -> Response:
    """The console starts at the overview."""
    return _redirect("/console/overview")


def _login_page(next_url: str, message: str = "", status: int = 200) -> Response:
    csrf = new_secret()
    response = _html(
        render("login.html", csrf=csrf, next=next_url, message=message, nav=(), current=""),
        status,
    )
    response.set_cookie(
        LOGIN_COOKIE, csrf, httponly=True, samesite="strict", path="/console", max_age=3600
    )
    return response


@router.get("/login")
def login_form(next: Annotated[str | None, Query(max_length=500)] = None) -> Response:
    """The login form: paste a bearer token."""
    return _login_page(_safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the form's CSRF token, authenticate the token, open a session."""
    try:
        form = await _form(request)
    except InvalidInput as exc:
        return _login_page("/console/overview", str(exc), 400)
    next_url = _safe_next(form.get("next"))
    if not is_same_secret(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _login_page(next_url, "the form expired or was not sent from this page", 403)
    token = form.get("token", "").strip()
    console = _console(request)
    try:
        await run_in_threadpool(console.runtime.gateway.authenticate, token)
    except AuthenticationError:
        return _login_page(next_url, "that token is not valid", 401)
    session = console.sessions.open(token)
    response = _redirect(next_url)
    response.set_cookie(
        SESSION_COOKIE, session.id, httponly=True, samesite="strict", path="/console"
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the form carries the CSRF token)."""
    console = _console(request)
    session = console.sessions.get(request.cookies.get(SESSION_COOKIE))
    form = await _form(request)
    if session is not None and not is_same_secret(form.get("csrf"), session.csrf):
        return _html(render("login.html", csrf="", next="", nav=(), current="",
                            message="the form expired; log out again"), 403)  # fmt: skip
    console.sessions.close(request.cookies.get(SESSION_COOKIE))
    response = _redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/console", httponly=True, samesite="strict")
    return response


# -- pages --------------------------------------------------------------------------------


@router.get("/overview")
def overview(request: Request, recheck: bool = False) -> Response:
    """Regions, subject counts, residency, ledger sizes and checkpoints."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        data = views.overview(console, fresh=recheck)
        return _page(request, "overview.html", principal, session,
                     diagram=region_diagram(data["boxes"]), **data)  # fmt: skip

    return _guarded(request, build)


@router.get("/flows")
def flows(
    request: Request,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> Response:
    """Cross-border transfers, allowed and denied, over a period."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        try:
            first, last = views.parse_period(start, end)
        except InvalidInput as exc:
            return _page(request, "flows.html", principal, session, status=400, error=str(exc),
                         start=start or "", end=end or "", flows=[], rows=[], allowed=0,
                         denied=0, partial=[], diagram=flow_diagram([]))  # fmt: skip
        data = views.flows(console, first, last)
        return _page(request, "flows.html", principal, session, error="",
                     start=first.isoformat(), end=last.isoformat(),
                     diagram=flow_diagram(data["flows"]), **data)  # fmt: skip

    return _guarded(request, build)


@router.get("/access")
def access(
    request: Request,
    region: Annotated[str | None, Query(max_length=40)] = None,
    principal_id: Annotated[str, Query(alias="principal", max_length=200)] = "",
    purpose: Annotated[str, Query(max_length=100)] = "",
    category: Annotated[str, Query(max_length=40)] = "",
    result: Annotated[str, Query(max_length=10)] = "",
    policy: Annotated[str, Query(max_length=200)] = "",
    destination: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The searchable decision log of one region, newest first, 50 a page."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        regions = list(console.runtime.topology.regions)
        chosen = region or regions[0]
        filters = Filters(principal_id.strip(), purpose.strip(), category.strip(),
                          result.strip(), policy.strip(), destination.strip().upper())  # fmt: skip
        values = {"regions": regions, "region": chosen, "filters": filters, "rows": [],
                  "next": None, "error": "", "size": 0, "notice": ""}  # fmt: skip
        try:
            if result.strip() not in ("", "allow", "deny"):
                raise InvalidInput("decision must be `allow` or `deny`")
            if filters.destination_country and not _COUNTRY.fullmatch(filters.destination_country):
                raise InvalidInput("destination must be a two-letter country code")
            if before and not before.isdigit():
                raise InvalidInput("`before` must be an entry index")
            rows, nxt, notice = views.access(
                console, chosen, filters, int(before) if before else None
            )
        except InvalidInput as exc:  # the form keeps what was typed
            return _page(request, "access.html", principal, session, status=400,
                         **{**values, "error": str(exc)})  # fmt: skip
        values.update(rows=rows, next=nxt, size=console.log(chosen).size, notice=notice)
        return _page(request, "access.html", principal, session, **values)

    return _guarded(request, build)


@router.get("/access/{region}/{index}")
def proof(request: Request, region: str, index: str) -> Response:
    """One entry with its inclusion proof, checked with the pure Merkle code."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        if not index.isdigit() or len(index) > 19:
            raise InvalidInput("an entry is named by its index, a whole number")
        values = views.proof(console, region, int(index))
        return _page(request, "proof.html", principal, session, **values)

    return _guarded(request, build)


@router.get("/grants")
def grants(request: Request, done: Annotated[str, Query(max_length=100)] = "") -> Response:
    """Pending requests (approve, deny) and active grants (revoke) the principal may see."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        return _page(request, "grants.html", principal, session, done=done,
                     **views.grants(console, principal))  # fmt: skip

    return _guarded(request, build)


@router.post("/grants/{grant_id}/{action}")
async def grant_action(request: Request, grant_id: str, action: str) -> Response:
    """Approve, deny or revoke through the grant desk (CSRF-checked form)."""
    try:
        form = await _form(request)
    except InvalidInput:
        form = {}  # no CSRF token then: refused below

    def build(console: views.Console, principal: Principal, session: Session) -> Response:
        if not is_same_secret(form.get("csrf"), session.csrf):
            raise AccessDenied("the form expired or was not sent from the console")
        grant = views.act_on_grant(console, principal, grant_id, action)
        return _redirect(f"/console/grants?done={quote(action)}+{quote(grant.id)}+{grant.state}")

    return await run_in_threadpool(_guarded, request, build)


@router.get("/migration")
def migration(request: Request) -> Response:
    """Legacy sources: progress, quarantine, deletion certificates (administrators)."""

    def build(console: views.Console, principal: Principal, session: Session) -> dict[str, Any]:
        views.verify_administrator(console, principal)
        return _page(request, "migration.html", principal, session, **views.migration(console))

    return _guarded(request, build)
