"""Shortcuts for tests that drive the use cases directly, without the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.auth import Principal
from gateway.bootstrap import context_of
from gateway.runtime import Runtime
from gateway.services import intake
from gateway.services.idempotency import Answer
from gateway.settings import Settings
from gateway.store.models import Dossier
from gateway.views import dossier_view


def render_for(runtime: Runtime) -> Any:
    """The dossier view as the API renders it, for ``runtime``'s calendar."""

    def render(session: Session, dossier: Dossier, now: datetime, /, *, created: bool = False) -> dict[str, Any]:
        return dossier_view(session, dossier, calendar=runtime.calendar, now=now, created=created)

    return render


async def submit(
    runtime: Runtime, principal: Principal, document: Any, *, idempotency_key: str | None = None, now: datetime
) -> Answer:
    """Submit ``document`` through the intake use case, as ``POST /api/v1/dossiers`` does."""
    return await intake.submit(
        context_of(runtime), principal, document, idempotency_key=idempotency_key, now=now, render=render_for(runtime)
    )


def reconfigured(runtime: Runtime, **sections: Any) -> Runtime:
    """A runtime on the same database whose settings have ``sections`` replaced (settings are read once)."""
    settings = Settings.from_raw({**runtime.settings.raw, **sections}, runtime.settings.base_dir)
    return Runtime(settings=settings, db=runtime.db, extras=dict(runtime.extras))
