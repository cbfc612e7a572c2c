"""The gateway's side of the payment provider's daily settlement: the payments it names and those paid that day.

``dvc-gateway payment reconcile`` compares these with the provider's settlement file; days are Vietnam's (the
provider's) days, whatever the server's time zone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.payment.port import LocalPayment
from adapters.payment.vnpay_wire import VNPAY_TIME
from gateway.services.payments import PAID, local_payment
from gateway.store.models import Payment

__all__ = ["local_payments", "vietnam_day_bounds"]

#: References looked up per query.
_CHUNK = 500


def vietnam_day_bounds(day: datetime) -> tuple[datetime, datetime]:
    """The UTC bounds of the day (in Vietnam's time) ``day`` falls on."""
    local = day.astimezone(VNPAY_TIME).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC), (local + timedelta(days=1)).astimezone(UTC)


def local_payments(
    session: Session, references: Iterable[str], days: Iterable[datetime], *, provider: str | None = None
) -> list[LocalPayment]:
    """The gateway's side of a settlement: the payments named in it, and those paid on ``days`` (Vietnam's time)
    (only ``provider``'s, ``Payment.provider``, when given)."""
    found: dict[str, Payment] = {}
    names = sorted(set(references))
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        for payment in session.scalars(select(Payment).where(Payment.reference.in_(chunk))):
            if provider is None or payment.provider == provider:
                found[payment.reference] = payment
    for day in days:
        low, high = vietnam_day_bounds(day)
        statement = select(Payment).where(Payment.status == PAID, Payment.paid_at >= low, Payment.paid_at < high)
        if provider is not None:
            statement = statement.where(Payment.provider == provider)
        for payment in session.scalars(statement):
            found[payment.reference] = payment
    return [local_payment(payment) for payment in sorted(found.values(), key=lambda p: p.id)]
