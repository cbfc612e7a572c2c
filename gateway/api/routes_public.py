"""The citizens' status lookup (public, no token): ``GET /api/v1/lookup/{code}``.

The answer carries the status, its Vietnamese label and the deadlines, never personal data (no names, ID numbers,
phones, addresses, files or signers). A code that is not a dossier code, and an unknown one, are both 404.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.codes import parse_dossier_code
from ..store.models import Dossier
from ..views import lookup_view
from .errors import ApiError
from .routes_common import clock, runtime_of
from .schemas import LookupView, error_responses

router = APIRouter(prefix="/api/v1/lookup", tags=["public"])


@router.get(
    "/{code}",
    summary="Public status of a dossier (no personal data)",
    response_model=None,
    responses={200: {"model": LookupView, "description": "Status and deadlines"}, **error_responses(404)},
)
async def lookup(code: str, request: Request) -> dict[str, Any]:
    try:
        parse_dossier_code(code)
    except ValueError:
        raise ApiError(404, "no dossier with this code") from None
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict[str, Any] | None:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
        return None if dossier is None else lookup_view(session, dossier, calendar=runtime.calendar, now=now)

    view = await runtime.db.run(read, short=True)
    if view is None:
        raise ApiError(404, "no dossier with this code")
    return view
