"""Operations: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``GET /metrics`` (Prometheus).

- ``/healthz`` answers 200 while the process serves requests; it touches nothing else.
- ``/readyz`` answers 200 when the database answers and its schema is at the newest migration, 503 otherwise (the
  check gives up after ``READY_TIMEOUT`` seconds: an unreachable database is not ready, not a hung probe).
- ``/metrics`` needs the admin token unless ``[server] public_metrics = true``; at each scrape it reads the outbox and
  the deadline watch from the database (:mod:`gateway.api.monitoring`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.orm import Session

from ..auth import ADMIN
from ..metrics import GatewayMetrics, Snapshot
from .errors import ApiError, error_response
from .monitoring import snapshot
from .routes_common import authenticate, clock, runtime_of
from .schemas import Health, Ready, error_responses

router = APIRouter(tags=["operations"])

READY_TIMEOUT = 5.0


@router.get(
    "/healthz", summary="Liveness", response_model=None, responses={200: {"model": Health, "description": "Alive"}}
)
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable and its schema current",
    response_model=None,
    responses={
        200: {"model": Ready, "description": "Ready"},
        503: {**error_responses(503)[503], "description": "Not ready (code not_ready; details: the failed checks)"},
    },
)
async def readyz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)

    def check() -> list[str]:
        if not runtime.db.ping():
            return ["the database is unreachable"]
        try:
            current = runtime.db.is_current()
        except Exception:  # noqa: BLE001 - readiness: any failure means not ready
            return ["the database schema version cannot be read"]
        if not current:
            return ["the database schema is not at the newest migration (run dvc-gateway db upgrade)"]
        return []

    problems = ["the readiness check timed out"]
    with anyio.move_on_after(READY_TIMEOUT):
        problems = await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    if problems:
        return error_response(503, problems[0], code="not_ready", details=[{"check": p} for p in problems])
    return JSONResponse({"status": "ready", "database": runtime.db.dialect})


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin token unless [server] public_metrics = true)",
    response_model=None,
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "The Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, by_reference=True),
    },
)
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    if not runtime.settings.server.public_metrics:
        from fastapi.security import HTTPBearer

        credentials = await HTTPBearer(auto_error=False)(request)
        principal = await authenticate(request, credentials)
        if principal.role != ADMIN:
            raise ApiError(403, f"metrics are for admin tokens, not {principal.role}")
    metrics: GatewayMetrics = request.app.state.metrics
    now = clock(request)
    near_due = timedelta(hours=runtime.settings.watch.near_due_hours)

    def read(session: Session) -> Snapshot:
        return snapshot(session, runtime.calendar, now, near_due=near_due)

    try:
        found: Snapshot | None = await runtime.db.run(read)
    except Exception:  # noqa: BLE001 - metrics still answer while the database is away
        found = None
    metrics.set_snapshot(found)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
