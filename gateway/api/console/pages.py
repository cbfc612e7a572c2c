"""The operators' console (``/console/``): server-rendered pages, Vietnamese labels, no script, nothing fetched from
elsewhere.

Pages: the flow per agency (``/console/``), the outbox and its dead letters with redrive of one or many
(``/console/outbox``), the agencies and their health (``/console/agencies``), the deadline watch
(``/console/watch``) and the periodic report with bar charts and its csv/xlsx files (``/console/reports``). Every
page needs a session (:mod:`gateway.api.console.session`); without one it redirects to the login form. Every form
posts its CSRF token.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ... import audit, outbox
from ...domain.calendar import VIETNAM_TZ
from ...domain.reports import Period
from ...services.report_files import COLUMNS, MEDIA_TYPES, period_line, table_rows
from ...services.report_files import render as render_report
from ...services.reports import build_report
from ...services.watch import watch_items
from ..routes_common import clock, runtime_of
from . import data
from .rendering import render
from .session import ConsoleSession, SessionKeeper

__all__ = ["router"]

router = APIRouter(prefix="/console", include_in_schema=False)

_MAX_REDRIVE = 500


def _keeper(request: Request) -> SessionKeeper:
    return request.app.state.console_sessions


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


def _forbidden(request: Request, message: str) -> HTMLResponse:
    return render(request, "message.html", {"title": "Không được phép", "message": message}, status_code=403)


def _page(request: Request, session: ConsoleSession, name: str, context: dict[str, Any]) -> HTMLResponse:
    return render(request, name, {"csrf": session.csrf, "logged_in": True, **context})


def _near_due(request: Request) -> timedelta:
    return timedelta(hours=runtime_of(request).settings.watch.near_due_hours)


# -- login and logout ---------------------------------------------------------------------------------------------


async def _login_page(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    keeper = _keeper(request)
    token, signed = await keeper.new_login_form()
    response = render(request, "login.html", {"error": error, "csrf": token}, status_code=status_code)
    keeper.attach_login_form(request, response, signed)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await _keeper(request).current(request) is not None:
        return RedirectResponse("/console/", status_code=303)
    return await _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    keeper = _keeper(request)
    form = await request.form()
    if not await keeper.login_form_valid(request, _text(form.get("csrf"))):
        return _forbidden(request, "Biểu mẫu đăng nhập đã hết hạn, hãy tải lại trang đăng nhập.")
    response = RedirectResponse("/console/", status_code=303)
    if await keeper.login(request, response, _text(form.get("token")) or ""):
        return response
    return await _login_page(request, "Mã truy cập không đúng hoặc không phải mã quản trị.", 401)


@router.post("/logout")
async def logout(request: Request) -> Response:
    checked = await _posted_form(request)
    if isinstance(checked, Response):
        return checked
    response = _login_redirect()
    await _keeper(request).logout(request, response)
    return response


async def _posted_form(request: Request) -> FormData | Response:
    """The form of a signed-in operator's POST whose CSRF token is right, or the answer refusing it."""
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    form = await request.form()
    if not SessionKeeper.csrf_valid(session, _text(form.get("csrf"))):
        return _forbidden(request, "Mã chống giả mạo (CSRF) không hợp lệ.")
    return form


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- pages ----------------------------------------------------------------------------------------------------------


@router.get("/")
async def flow(request: Request) -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    runtime, now, near_due = runtime_of(request), clock(request), _near_due(request)

    def read(db: Session) -> list[dict[str, Any]]:
        return data.flow_by_agency(db, watch_items(db, runtime.calendar, now, near_due=near_due))

    rows = await runtime.db.run(read)
    return _page(request, session, "flow.html", {"rows": rows, "statuses": data.FLOW_STATUSES, "page": "flow"})


@router.get("/outbox")
async def outbox_page(request: Request, state: str = "dead", redriven: int | None = None) -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    chosen = state if state in outbox.STATES else None
    runtime = runtime_of(request)

    def read(db: Session) -> tuple[list[dict[str, Any]], dict[str, int]]:
        return data.outbox_rows(db, chosen), outbox.stats(db)

    rows, stats = await runtime.db.run(read)
    context = {"rows": rows, "stats": stats, "state": chosen or "", "redriven": redriven, "page": "outbox"}
    return _page(request, session, "outbox.html", context)


@router.post("/outbox/redrive")
async def redrive(request: Request) -> Response:
    checked = await _posted_form(request)
    if isinstance(checked, Response):
        return checked
    form = checked
    every = form.get("all") == "1"
    ids = sorted({int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdigit()})[:_MAX_REDRIVE]

    def work(db: Session) -> int:
        audit.lock_for_write(db)
        chosen = ids
        if every:
            chosen = [m.id for m in outbox.list_messages(db, outbox.DEAD, _MAX_REDRIVE)]
        done = 0
        for message_id in chosen:
            message = outbox.get(db, message_id)
            if message is None or not outbox.redrive(db, message_id):
                continue
            done += 1
            details = {"kind": message.kind, "target": message.target, "via": "console"}
            audit.append(db, "admin", "outbox.redrive", str(message_id), details)
        return done

    done = await runtime_of(request).db.write(work)
    return RedirectResponse(f"/console/outbox?state=dead&redriven={done}", status_code=303)


@router.get("/agencies")
async def agencies(request: Request) -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    now = clock(request)
    rows = await runtime_of(request).db.run(lambda db: data.agency_health(db, now))
    return _page(request, session, "agencies.html", {"rows": rows, "page": "agencies"})


@router.get("/watch")
async def watch(request: Request, agency: str | None = None) -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    runtime, now, near_due = runtime_of(request), clock(request), _near_due(request)
    items = await runtime.db.run(
        lambda db: watch_items(db, runtime.calendar, now, near_due=near_due, agency_code=agency or None)
    )
    context = {"items": items, "agency": agency or "", "near_due_hours": near_due.total_seconds() / 3600}
    return _page(request, session, "watch.html", {**context, "page": "watch"})


def _period(value: str | None, now: datetime) -> Period:
    try:
        return Period.parse(value or "")
    except ValueError:
        local = now.astimezone(VIETNAM_TZ)
        return Period.parse(f"{local.year}-{local.month:02d}")


async def _report(request: Request, period: Period) -> dict[str, Any]:
    runtime, now = runtime_of(request), clock(request)
    return await runtime.db.run(lambda db: build_report(db, period, runtime.calendar, now=now).to_json())


@router.get("/reports")
async def reports(request: Request, period: str | None = None) -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    chosen = _period(period, clock(request))
    document = await _report(request, chosen)
    context = {
        "period": chosen.label,
        "period_line": period_line(document),
        "bars": data.report_bars(document),
        "headings": [heading for _, heading in COLUMNS],
        "table": list(table_rows(document)),
        "page": "reports",
    }
    return _page(request, session, "reports.html", context)


@router.get("/reports/file")
async def report_file(request: Request, period: str | None = None, format: str = "xlsx") -> Response:
    session = await _keeper(request).current(request)
    if session is None:
        return _login_redirect()
    if format not in ("csv", "xlsx"):
        format = "xlsx"
    chosen = _period(period, clock(request))
    content = render_report(await _report(request, chosen), format)
    disposition = f'attachment; filename="bao-cao-{chosen.label}.{format}"'
    return Response(content, media_type=MEDIA_TYPES[format], headers={"Content-Disposition": disposition})
