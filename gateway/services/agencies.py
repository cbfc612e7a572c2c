"""Questions about an agency's dossiers that the endpoint registry asks before it changes a registration."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.domain.status import TERMINAL_STATUSES, Status
from gateway.store.models import Dossier

__all__ = ["open_dossier_count"]


def open_dossier_count(session: Session, agency_code: str) -> int:
    """How many dossiers not in a terminal status are with or led by ``agency_code``."""
    open_statuses = [s.value for s in Status if s not in TERMINAL_STATUSES]
    statement = select(func.count(Dossier.id)).where(
        Dossier.status.in_(open_statuses),
        (Dossier.agency_code == agency_code) | (Dossier.lead_agency_code == agency_code),
    )
    return int(session.scalar(statement) or 0)
