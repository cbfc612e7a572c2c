"""Placing a postal order: what to send the postal service for a dossier, and the order it gave back.

:func:`prepare_order` reads, in one unit of work, the parties (the applicant from the dossier, the one-stop office
from the settings) and the items; an order already placed, cancelled or no longer needed (the dossier refused,
withdrawn, or its result handed over) is not placed again. :func:`store_order` keeps the order code and records the
history step ``pickup_ordered`` or ``shipped``. Names, phones and addresses go to the postal service only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import PermanentError
from adapters.postal import Order, TrackingStatus
from gateway import audit, messages
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status
from gateway.services.tracking import ACTOR, DELIVERY, KIND_WORDS, PICKUP, RANK, record_postal_step
from gateway.store.models import Dossier, Shipment
from gateway.unit_of_work import UnitOfWork

__all__ = ["ORDER_STEPS", "OrderRequest", "prepare_order", "store_order"]

log = logging.getLogger("gateway.shipments")

UPSTREAM = messages.POSTAL_TARGET
#: The history step of an order placed, by kind.
ORDER_STEPS = {PICKUP: "pickup_ordered", DELIVERY: "shipped"}


@dataclass(frozen=True)
class OrderRequest:
    """What one order sends: the two parties (``name``, ``phone``, ``address``) and the items."""

    sender: dict[str, str]
    receiver: dict[str, str]
    items: list[dict[str, Any]]


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _address(dossier: Dossier) -> str | None:
    given = dossier.delivery_address
    if isinstance(given, Mapping):
        if _text(given.get("address")):
            return _text(given.get("address"))
        parts = [_text(value) for value in given.values()]
        joined = ", ".join(part for part in parts if part)
        if joined:
            return joined
    return _text((dossier.applicant or {}).get("address"))


def _applicant_party(dossier: Dossier) -> dict[str, str]:
    applicant = dossier.applicant or {}
    given = dossier.delivery_address if isinstance(dossier.delivery_address, Mapping) else {}
    party = {
        "name": _text(given.get("name")) or _text(applicant.get("full_name")) or _text(applicant.get("name")),
        "phone": _text(given.get("phone")) or _text(applicant.get("phone")),
        "address": _address(dossier),
    }
    missing = [key for key, value in party.items() if not value]
    if missing:
        message = f"dossier {dossier.code}: the applicant's {' and '.join(missing)} for the postal order is missing"
        raise PermanentError(message, upstream=UPSTREAM)
    return {key: str(value) for key, value in party.items()}


def _items(dossier: Dossier, kind: str) -> list[dict[str, Any]]:
    if kind == DELIVERY:
        return [{"name": f"Kết quả giải quyết hồ sơ {dossier.code}", "quantity": 1}]
    originals = [c for c in dossier.components if c.current and c.originals_check_required]
    if not originals:
        return [{"name": f"Bản gốc đối chiếu hồ sơ {dossier.code}", "quantity": 1}]
    return [{"name": f"Bản gốc đối chiếu: {c.name or c.code}", "quantity": 1, "component": c.code} for c in originals]


def _find_dossier(session: Session, code: str) -> Dossier:
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if dossier is None:
        raise PermanentError(f"no dossier {code}", upstream=UPSTREAM)
    return dossier


def _shipment(session: Session, dossier: Dossier, kind: str) -> Shipment:
    shipment = session.scalars(
        select(Shipment).where(Shipment.dossier_id == dossier.id, Shipment.kind == kind)
    ).one_or_none()
    if shipment is None:  # the message outlived its row (an operator removed it): order anyway, as asked
        shipment = Shipment(dossier_id=dossier.id, kind=kind, status="requested")
        session.add(shipment)
        session.flush()
    return shipment


def _moot(dossier: Dossier, kind: str) -> str | None:
    """Why the order is no longer needed, if it is not."""
    if dossier.status in (Status.REFUSED, Status.WITHDRAWN):
        return f"the dossier is {dossier.status}"
    if kind == DELIVERY and dossier.status == Status.RETURNED:
        return "the result was already handed over"
    return None


def prepare_order(session: Session, code: str, kind: str, office: Mapping[str, str] | None) -> OrderRequest | None:
    """The order to place for dossier ``code`` (``None``: placed or cancelled already, or no longer needed);
    :class:`PermanentError` when the office or the applicant's contact is missing."""
    dossier = _find_dossier(session, code)
    shipment = _shipment(session, dossier, kind)
    if shipment.order_code is not None or shipment.status == "cancelled":
        return None  # already ordered (a repeated message) or cancelled
    reason = _moot(dossier, kind)
    if reason is not None:
        audit.lock_for_write(session)
        shipment.status = "cancelled"
        shipment.details = {**(shipment.details or {}), "cancelled": reason}
        audit.append(session, ACTOR, "shipment.cancelled", code, {"kind": kind, "reason": reason})
        log.info("postal order not needed", extra={"dossier_code": code, "kind": kind, "reason": reason})
        return None
    if office is None:
        raise PermanentError(
            "[postal] office_name, office_phone and office_address must be configured to order", upstream=UPSTREAM
        )
    applicant = _applicant_party(dossier)
    sender, receiver = (applicant, dict(office)) if kind == PICKUP else (dict(office), applicant)
    return OrderRequest(sender=sender, receiver=receiver, items=_items(dossier, kind))


def store_order(
    uow: UnitOfWork, code: str, kind: str, order: Order, *, calendar: OfficeCalendar, now: datetime
) -> None:
    """Keep the order's code on the shipment and record ``pickup_ordered`` or ``shipped`` (once)."""
    session = uow.session
    audit.lock_for_write(session)
    dossier = _find_dossier(session, code)
    shipment = _shipment(session, dossier, kind)
    if shipment.order_code is not None:
        return
    shipment.order_code = order.order_code
    shipment.status = order.status if order.status in RANK else TrackingStatus.ACCEPTED.value
    shipment.last_checked_at = now
    shipment.updated_at = now
    record_postal_step(
        uow,
        dossier,
        step=ORDER_STEPS[kind],
        at=now,
        note=f"Postal {KIND_WORDS[kind]} ordered: {order.order_code}",
        details={"order_code": order.order_code, "kind": kind},
        calendar=calendar,
        now=now,
    )
    audit.append(session, ACTOR, "shipment.ordered", code, {"order_code": order.order_code, "kind": kind}, at=now)
    log.info("postal order placed", extra={"dossier_code": code, "kind": kind, "order_code": order.order_code})
