"""Operations and provider-facing answers: health, readiness, the payment notification, postal events."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Answer

__all__ = [
    "Health",
    "NationalPaymentNotificationAnswer",
    "PaymentNotificationAnswer",
    "PostalEventOutcome",
    "Ready",
    "SmsInboundOutcome",
]


class Health(Answer):
    status: Literal["ok"]


class Ready(Answer):
    status: Literal["ready"]
    database: str = Field(description="the database's dialect: sqlite or postgresql")


class PaymentNotificationAnswer(Answer):
    """The payment platform's expected answer (always HTTP 200)."""

    RspCode: str = Field(
        description="00 recorded, 01 unknown reference, 02 already confirmed, 04 amount mismatch, "
        "97 bad signature, 99 anything else",
        examples=["00"],
    )
    Message: str


class NationalPaymentNotificationAnswer(Answer):
    """The national payment platform's expected answer (always HTTP 200)."""

    MaLoi: Literal["00", "01", "02", "04", "97", "99"] = Field(
        description="00 recorded, 01 unknown reference, 02 already confirmed, 04 amount mismatch, "
        "97 bad MaXacThuc, 99 anything else",
        examples=["00"],
    )


class SmsInboundOutcome(Answer):
    """What an inbound text did: its reply queued (``found``, ``unknown``, ``syntax``) or none (``rate_limited``)."""

    outcome: Literal["found", "unknown", "syntax", "rate_limited"]
    replied: bool


class PostalEventOutcome(Answer):
    """What a postal tracking event did (repeats and late events are accepted and change nothing)."""

    order_code: str
    kind: str
    status: str
    outcome: Literal["applied", "duplicate", "late"]
    dossier_code: str
    dossier_status: str
