"""What an agency is told of a payment (``agency.fee_paid``): the payment and the fees it settled.

The agency flow delivers the message; this module reads, in the delivery's unit of work, the agency's registration
and the notice's body (reference, provider, amount in ``int`` VND, currency, status, time paid, the provider's
transaction number and the fees covered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import PermanentError
from gateway.domain.times import iso
from gateway.registry import get_agency
from gateway.store.models import Dossier, Payment

__all__ = ["FeePaidNotice", "fee_paid_notice"]


@dataclass(frozen=True)
class FeePaidNotice:
    """The agency's protocol and registration document, and the body telling it of the payment."""

    protocol: str
    document: dict[str, Any]
    body: dict[str, Any]


def fee_paid_notice(session: Session, code: str, agency_code: str, reference: str) -> FeePaidNotice:
    """The notice of payment ``reference`` of dossier ``code`` for ``agency_code``; :class:`PermanentError` when the
    agency is not registered or the payment is not the dossier's."""
    upstream = f"agency:{agency_code}"
    registration = get_agency(session, agency_code)
    if registration is None:
        raise PermanentError(f"agency {agency_code} is not registered", upstream=upstream)
    payment = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
    if payment is None or dossier is None or payment.dossier_id != dossier.id:
        raise PermanentError(f"no payment {reference} of dossier {code}", upstream=upstream)
    codes = set(payment.fee_codes or [])
    body = {
        "reference": payment.reference,
        "provider": payment.provider,
        "amount": payment.amount,
        "currency": payment.currency,
        "status": payment.status,
        "paid_at": iso(payment.paid_at),
        "transaction_no": payment.provider_transaction,
        "fees": [{"code": f.code, "name": f.name, "amount": f.amount} for f in dossier.fees if f.code in codes],
    }
    return FeePaidNotice(protocol=registration.protocol, document=registration.document(), body=body)
