"""(being written)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from .store.models import Dossier, HistoryEntry


def on_change(
    session: Session, dossier: Dossier, entry: HistoryEntry, *, enabled: bool, previous: str | None, now: datetime
) -> None:
    return None


def periodic_jobs(runtime, dispatcher) -> list:  # type: ignore[no-untyped-def]
    return []


def shipments_view(session: Session, dossier: Dossier) -> list[dict[str, Any]]:
    return []
