"""Withdrawal: the applicant withdraws the dossier; it becomes ``withdrawn`` and the current agency is told."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from gateway import audit
from gateway.auth import Principal
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status, check_transition
from gateway.services.agency_outbox import enqueue_withdrawal
from gateway.services.changes import record_change
from gateway.services.context import Context
from gateway.services.idempotency import Answer, DossierRequest, change_dossier
from gateway.store.models import Dossier
from gateway.unit_of_work import UnitOfWork
from gateway.validation import parse_model

__all__ = ["WithdrawRequest", "withdraw", "withdraw_dossier"]


class WithdrawRequest(BaseModel):
    """``POST /api/v1/dossiers/{code}/withdraw``."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[StrictStr, Field(min_length=1, max_length=4000)]


def withdraw(
    uow: UnitOfWork, dossier: Dossier, reason: str, *, actor: Principal, calendar: OfficeCalendar, now: datetime
) -> None:
    """The applicant withdraws ``dossier``: ``withdrawn``, and the current agency is told (``agency.withdraw``)."""
    source = Status(dossier.status)
    check_transition(source, Status.WITHDRAWN)
    details = {"reason": reason, "from": source.value}
    record_change(
        uow,
        dossier,
        status=Status.WITHDRAWN,
        at=now,
        actor=actor.name,
        note=reason,
        details=details,
        calendar=calendar,
        now=now,
    )
    enqueue_withdrawal(uow.session, dossier, reason)
    audit.append(uow.session, actor.name, "dossier.withdrawn", dossier.code, {"from": source.value}, at=now)


async def withdraw_dossier(ctx: Context, request: DossierRequest) -> Answer:
    """``POST /api/v1/dossiers/{code}/withdraw`` in one unit of work."""
    context = await request.idempotency()
    body = parse_model(WithdrawRequest, request.document)

    def change(uow: UnitOfWork, dossier: Dossier) -> None:
        withdraw(uow, dossier, body.reason, actor=request.principal, calendar=ctx.calendar, now=request.now)

    return await change_dossier(ctx, context, request, change, short=True)
