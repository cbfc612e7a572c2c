"""The payment's part of the dossier view: its latest payment (``reference``, ``url``, ``amount``, ``status``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.store.models import Dossier, Payment

__all__ = ["payment_view"]


def payment_view(session: Session, dossier: Dossier) -> dict[str, Any] | None:
    """The dossier response's ``payment``: its latest payment, or ``None`` when it has none."""
    if dossier.id is None:
        return None
    latest = session.scalars(
        select(Payment).where(Payment.dossier_id == dossier.id).order_by(Payment.id.desc()).limit(1)
    ).first()
    if latest is None:
        return None
    return {"reference": latest.reference, "url": latest.url, "amount": latest.amount, "status": latest.status}
