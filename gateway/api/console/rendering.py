"""Rendering the console's and the lookup page's templates (Jinja2, shipped as package data, autoescaped).

Every page is answered with headers that keep it to itself: no script may run (``Content-Security-Policy`` allows
only inline styles and the page's own images), it is never framed, never cached, never sniffed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request

from ...domain.calendar import VIETNAM_TZ
from ...domain.labels import STATUS_LABELS_VI
from ...domain.watch import WATCH_LABELS_VI

__all__ = ["OUTBOX_LABELS_VI", "render"]

OUTBOX_LABELS_VI = {"pending": "Chờ gửi", "in_flight": "Đang gửi", "done": "Đã gửi", "dead": "Thư lỗi"}
HEALTH_LABELS_VI = {"ok": "Bình thường", "degraded": "Đang gửi lại", "error": "Có thư lỗi"}

_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _when(value: datetime | str | None) -> str:
    """``23/11/2026 17:00`` in Vietnam's time (an empty string for none)."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(VIETNAM_TZ).strftime("%d/%m/%Y %H:%M")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway.api.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.globals.update(
        status_label=lambda s: STATUS_LABELS_VI.get(s, s),
        watch_label=lambda c: WATCH_LABELS_VI.get(c, c),
        outbox_label=lambda s: OUTBOX_LABELS_VI.get(s, s),
        health_label=lambda h: HEALTH_LABELS_VI.get(h, h),
    )
    return env


_ENV = _environment()


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """The template ``name`` rendered with ``context`` (and the request), as an HTML answer."""
    html = _ENV.get_template(name).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=_HEADERS)
