"""The messages the use cases send to an agency's one-stop system through the outbox.

``agency.deliver`` hands a dossier over (at intake, and to the receiving agency of a liên thông transfer),
``agency.supplement`` forwards the applicant's supplement, ``agency.withdraw`` tells of a withdrawal. Each is keyed by
the dossier code and the step, so a receiver that honours the key applies it once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway import messages, outbox
from gateway.store.models import Dossier

__all__ = ["enqueue_delivery", "enqueue_supplement", "enqueue_withdrawal"]


def enqueue_delivery(session: Session, dossier: Dossier, agency_code: str) -> None:
    """An ``agency.deliver`` message handing ``dossier`` to ``agency_code``."""
    outbox.add(
        session,
        kind=messages.AGENCY_DELIVER,
        target=agency_code,
        payload={"dossier_code": dossier.code, "agency_code": agency_code},
        idempotency_key=outbox.message_key(dossier.code, f"deliver:{agency_code}"),
        ordering_key=dossier.code,
    )


def enqueue_supplement(session: Session, dossier: Dossier, codes: list[str], number: int) -> None:
    """An ``agency.supplement`` message forwarding supplement ``number`` (components ``codes``) to the agency."""
    outbox.add(
        session,
        kind=messages.AGENCY_SUPPLEMENT,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "components": codes},
        idempotency_key=outbox.message_key(dossier.code, f"supplement:{number}"),
        ordering_key=dossier.code,
    )


def enqueue_withdrawal(session: Session, dossier: Dossier, reason: str) -> None:
    """An ``agency.withdraw`` message telling the current agency that the applicant withdrew."""
    outbox.add(
        session,
        kind=messages.AGENCY_WITHDRAW,
        target=dossier.agency_code,
        payload={"dossier_code": dossier.code, "agency_code": dossier.agency_code, "reason": reason},
        idempotency_key=outbox.message_key(dossier.code, "withdraw"),
        ordering_key=dossier.code,
    )
