"""The postal service's part of the dossier view: ``shipments[]`` with ``order_code``, ``kind`` and ``status``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.models import Dossier, Shipment

__all__ = ["shipments_view"]


def shipments_view(session: Session, dossier: Dossier) -> list[dict[str, Any]]:
    """The dossier's ``shipments[]``: ``order_code`` (none until ordered), ``kind``, ``status``."""
    if dossier.id is None:
        return []
    rows = session.scalars(select(Shipment).where(Shipment.dossier_id == dossier.id).order_by(Shipment.id))
    return [{"order_code": row.order_code, "kind": row.kind, "status": row.status} for row in rows]
