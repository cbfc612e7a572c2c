"""The payment's part of the dossier view: its latest payment (``reference``, ``url``, ``amount``, ``status``), and
where the dossier's fees stand (:func:`payment_status`: ``none``, ``unpaid``, ``pending``, ``paid``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gateway.services.payments import PENDING, FeeLike, payments_of, unpaid, unpaid_of
from gateway.store.models import Dossier, Payment

__all__ = ["fees_status", "payment_status", "payment_view", "payments_by_dossier"]


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


def payments_by_dossier(session: Session, ids: Collection[int]) -> dict[int, list[Payment]]:
    """The payments of the dossiers ``ids`` in one query, by dossier id (each of them), oldest first: what
    :func:`fees_status` needs for several dossiers, of which only those with unpaid fees need any."""
    found: dict[int, list[Payment]] = {dossier_id: [] for dossier_id in ids}
    if found:
        for payment in session.scalars(_PAYMENTS_OF, {"ids": sorted(found)}):
            found[payment.dossier_id].append(payment)
    return found


def payment_status(session: Session, dossier: Dossier, *, payments: Sequence[Payment] | None = None) -> dict[str, Any]:
    """Where the dossier's fees stand (:func:`fees_status`). ``payments``: the dossier's payments, oldest first, when
    the caller knows them (read otherwise, and only when some fee is unpaid)."""
    if payments is None:
        payments = payments_of(session, dossier) if unpaid(dossier) else []
    return fees_status(dossier.fees, payments)


def fees_status(fees: Sequence[FeeLike], payments: Sequence[Payment]) -> dict[str, Any]:
    """Where a dossier's ``fees`` stand, given its ``payments`` (oldest first): ``status`` (``none``: no fee to pay;
    ``paid``: every fee paid; ``pending``: an online payment of the unpaid fees is under way; ``unpaid``),
    ``unpaid_amount`` (int VND) and the pending payment's ``reference``."""
    owed = unpaid_of(fees)
    pending = next((p for p in reversed(payments) if p.status == PENDING), None) if owed else None
    if not owed:
        status = "paid" if any(fee.amount > 0 for fee in fees) else "none"
    else:
        status = "pending" if pending is not None else "unpaid"
    return {
        "status": status,
        "unpaid_amount": sum(fee.amount for fee in owed),
        "reference": pending.reference if pending is not None else None,
    }
