"""The payment's part of the dossier view: its latest payment (``reference``, ``url``, ``amount``, ``status``), and
where the dossier's fees stand (:func:`payment_status`: ``none``, ``unpaid``, ``pending``, ``paid``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.services.payments import PENDING, payments_of, unpaid
from gateway.store.models import Dossier, Payment

__all__ = ["payment_status", "payment_view"]


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


#: The payments of several dossiers, each dossier's oldest first; built once.
_PAYMENTS_OF = (
    select(Payment)
    .where(Payment.dossier_id.in_(bindparam("ids", expanding=True)))
    .order_by(Payment.dossier_id, Payment.id)
)


def payments_by_dossier(session: Session, dossiers: Sequence[Dossier]) -> dict[int, list[Payment]]:
    """The payments :func:`payment_status` reads, for several dossiers in one query: those of the dossiers with
    unpaid fees, by dossier id, oldest first (the others' status needs none)."""
    ids = sorted({dossier.id for dossier in dossiers if dossier.id is not None and unpaid(dossier)})
    found: dict[int, list[Payment]] = {dossier_id: [] for dossier_id in ids}
    if ids:
        for payment in session.scalars(_PAYMENTS_OF, {"ids": ids}):
            found[payment.dossier_id].append(payment)
    return found


def payment_status(session: Session, dossier: Dossier, *, payments: Sequence[Payment] | None = None) -> dict[str, Any]:
    """Where the fees stand: ``status`` (``none``: no fee to pay; ``paid``: every fee paid; ``pending``: an online
    payment of the unpaid fees is under way; ``unpaid``), ``unpaid_amount`` (int VND) and the pending payment's
    ``reference``. ``payments``: the dossier's payments, oldest first, when the caller knows them (read otherwise)."""
    fees = unpaid(dossier)
    pending = None
    if fees:
        known = payments_of(session, dossier) if payments is None else payments
        pending = next((p for p in reversed(known) if p.status == PENDING), None)
    if not fees:
        status = "paid" if any(fee.amount > 0 for fee in dossier.fees) else "none"
    else:
        status = "pending" if pending is not None else "unpaid"
    return {
        "status": status,
        "unpaid_amount": sum(fee.amount for fee in fees),
        "reference": pending.reference if pending is not None else None,
    }
