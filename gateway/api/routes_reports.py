"""``GET /api/v1/reports?period=…[&agency=…&procedure=…&format=json|csv|xlsx]`` (admin): the periodic report.

``period`` is a month (``2026-10``), a quarter (``2026-Q4``), a half-year (``2026-H2``) or a year (``2026``); anything
else is a 422 in the error shape. JSON is the report document; ``csv`` and ``xlsx`` come as attachments with
Vietnamese headings. The counting rules are in ``docs/counting-rules.md``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from ..auth import ADMIN, Principal
from ..domain.codes import is_valid_agency_code
from ..domain.reports import Period
from ..services.report_files import MEDIA_TYPES, render
from ..services.reports import build_report
from .errors import ApiError
from .routes_common import clock, require, runtime_of
from .schemas import PeriodicReport, error_responses

router = APIRouter(prefix="/api/v1", tags=["reports"])

Admin = Annotated[Principal, Depends(require(ADMIN))]
_FILE = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/reports",
    summary="The periodic report per agency and procedure",
    response_model=None,
    responses={
        200: {
            "model": PeriodicReport,
            "description": "The report: JSON, or a csv or xlsx attachment",
            "content": {kind.split(";")[0]: _FILE for kind in (MEDIA_TYPES["csv"], MEDIA_TYPES["xlsx"])},
        },
        **error_responses(401, 403, 422),
    },
)
async def report(
    request: Request,
    principal: Admin,
    period: Annotated[str, Query(description="2026-10 (month), 2026-Q4, 2026-H2 or 2026")],
    agency: Annotated[str | None, Query(description="one agency only")] = None,
    procedure: Annotated[str | None, Query(description="one procedure only")] = None,
    format: Annotated[Literal["json", "csv", "xlsx"], Query(description="json (default), csv or xlsx")] = "json",
) -> Response:
    try:
        chosen = Period.parse(period)
    except ValueError as exc:
        raise ApiError(422, f"period: {exc}", details=[{"field": "period", "message": str(exc)}]) from None
    runtime = runtime_of(request)
    now = clock(request)

    def read(session: Session) -> dict:
        return build_report(session, chosen, runtime.calendar, now=now, agency=agency, procedure=procedure).to_json()

    document = await runtime.db.run(read)
    if format == "json":
        return JSONResponse(document)
    scope = f"-{agency}" if agency and is_valid_agency_code(agency) else ""
    name = f"bao-cao-{chosen.label}{scope}.{format}"
    return Response(
        render(document, format),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
