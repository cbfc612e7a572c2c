"""The citizens' lookup page: ``GET /lookup?code=…`` (public, HTML, no script needed).

It shows what the public lookup API shows (:func:`gateway.views.lookup_view`: the status and its Vietnamese label, the
national portal's status code, reception and due dates, whether it is late) plus the submission and completion dates
and the dates of each status change, never personal data, notes or who made a change. Each client address may look
up ``[console] lookup_per_minute`` times a minute (a moving window); more is answered 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select
from sqlalchemy.orm import Session

from ...domain.codes import parse_dossier_code
from ...domain.times import iso
from ...store.models import Dossier
from ...views import lookup_view
from ..routes_common import clock, runtime_of
from .rendering import render

__all__ = ["LookupLimiter", "router"]

router = APIRouter(include_in_schema=False)

_MAX_CODE = 96


class LookupLimiter:
    """At most ``per_minute`` lookups per client address in any minute (kept in this process's memory)."""

    def __init__(self, per_minute: int) -> None:
        self._limit = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def allow(self, address: str) -> bool:
        return self._limiter.hit(self._limit, "lookup", address)


def _timeline(dossier: Dossier) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for entry in dossier.history:
        if (entry.details or {}).get("step") or (steps and steps[-1]["status"] == entry.status):
            continue  # an integration's step, or the same status again: nothing new for the applicant
        steps.append({"status": entry.status, "at": iso(entry.at)})
    return steps


@router.get("/lookup")
async def lookup_page(request: Request, code: str | None = None) -> Response:
    address = request.client.host if request.client else "unknown"
    code = (code or "").strip()[:_MAX_CODE]
    if not code:
        return render(request, "lookup.html", {"code": "", "found": None})
    if not request.app.state.lookup_limiter.allow(address):
        context = {"code": code, "found": None, "limited": True}
        response = render(request, "lookup.html", context, status_code=429)
        response.headers["Retry-After"] = "60"
        return response
    try:
        parse_dossier_code(code)
    except ValueError:
        return render(request, "lookup.html", {"code": code, "found": False}, status_code=404)
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict[str, Any] | None:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
        if dossier is None:
            return None
        view = lookup_view(session, dossier, calendar=runtime.calendar, now=now)
        return {
            **view,
            "submitted_at": iso(dossier.submitted_at),
            "completed_at": iso(dossier.completed_at),
            "timeline": _timeline(dossier),
        }

    found = await runtime.db.run(read)
    if found is None:
        return render(request, "lookup.html", {"code": code, "found": False}, status_code=404)
    return render(request, "lookup.html", {"code": code, "found": True, "dossier": found})
