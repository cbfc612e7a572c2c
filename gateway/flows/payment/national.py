"""The national payment platform's part of the payment flow: ``payment.init`` creates the payment there.

A payment the national platform takes is written pending without a payer's URL, in the transaction of the change
that made the fees due; this handler then calls the platform's ``init`` and keeps the URL (``UrlThanhToan``) and the
platform's transaction number (``MaGiaoDich``) it answers, so the dossier view shows where to pay. A payment no
longer pending, or already created there, is left alone (the message is safe to repeat).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import PermanentError
from adapters.payment.port import PaymentRequest
from gateway import messages
from gateway.flows.payment.settings import PaymentSettings
from gateway.services.context import Context
from gateway.services.payments import NATIONAL, PENDING
from gateway.store.models import Payment
from gateway.workers import MessageView

__all__ = ["NationalPaymentInit", "PaymentInitHandler"]

log = logging.getLogger("gateway.fees")


class NationalPaymentInit(Protocol):
    """What the handler needs of the national platform's client."""

    async def create_payment(
        self,
        reference: str,
        amount_vnd: int,
        description: str,
        return_url: str,
        client_ip: str,
        *,
        dossier_code: str | None = None,
    ) -> PaymentRequest: ...


def _pending(session: Session, reference: str) -> dict[str, Any] | None:
    payment = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    if payment is None or payment.provider != NATIONAL or payment.status != PENDING or payment.url:
        return None
    return {"amount": payment.amount}


class PaymentInitHandler:
    """Creates each ``payment.init`` message's payment at the national platform."""

    kinds = frozenset({messages.PAYMENT_INIT})

    def __init__(
        self, ctx: Context, platform: NationalPaymentInit, settings: PaymentSettings, *, close: Any = None
    ) -> None:
        self.ctx = ctx
        self.platform = platform
        self.settings = settings
        self._close = close

    async def handle(self, message: MessageView) -> None:
        reference, code = message.payload.get("reference"), message.payload.get("dossier_code")
        if not isinstance(reference, str) or not isinstance(code, str):
            raise PermanentError("a payment.init message without its reference", upstream=messages.PAYMENT_TARGET)
        found = await self.ctx.db.run(lambda session: _pending(session, reference))
        if found is None:
            log.info("payment.init skipped: not pending any more", extra={"reference": reference})
            return
        request = await self.platform.create_payment(
            reference,
            found["amount"],
            f"Thanh toan phi, le phi ho so {code}",
            self.settings.return_url,
            self.settings.server_ip,
            dossier_code=code,
        )
        await self.ctx.db.run(lambda session: _keep(session, reference, request))
        log.info("payment created at the national platform", extra={"dossier_code": code, "reference": reference})

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def _keep(session: Session, reference: str, request: PaymentRequest) -> None:
    payment = session.scalars(select(Payment).where(Payment.reference == reference)).one_or_none()
    if payment is None or payment.status != PENDING:
        return
    payment.url = request.url
    created: datetime | None = request.created_at
    payment.details = {
        **(payment.details or {}),
        "init": "done",
        "transaction_id": request.transaction_no,
        **({"created_at": created.isoformat()} if created is not None else {}),
    }
