"""Delivering to agencies: ``agency.deliver``, ``agency.supplement``, ``agency.withdraw``, ``agency.fee_paid`` and
``agency.question`` (a citizen's question, to agencies registered with ``protocol = "rest"``).

The handler reads what a message needs in one unit of work (the registration, the dossier as the agency receives
it), then calls the agency's one-stop client outside any transaction. A missing registration or dossier, or a
registration the client refuses, is a permanent failure (the message is parked dead); the client's own errors say
whether a retry may help.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from adapters.errors import PermanentError
from adapters.onestop.port import OneStopClient
from gateway import messages
from gateway.flows.agency.ports import AgencyClients, FeePaidReceiver, QuestionReceiver
from gateway.flows.payment.agency_notice import fee_paid_notice
from gateway.registry import registered_document
from gateway.services.context import Context
from gateway.services.questions import agency_view
from gateway.store.models import Question
from gateway.workers import MessageView

__all__ = ["AgencyDocuments", "AgencyHandler"]

log = logging.getLogger("gateway.dispatch")

#: Renders dossiers as the agencies receive them, by (dossier code, agency code) pair; a pair whose dossier does not
#: exist is left out (the composition root passes the read model's function, which reads a whole batch at once).
AgencyDocuments = Callable[[Session, Sequence[tuple[str, str]]], dict[tuple[str, str], dict[str, Any]]]


@dataclass(frozen=True)
class _Work:
    """What one agency message needs from the database, read in one unit of work."""

    registration: dict[str, Any]
    protocol: str
    body: dict[str, Any] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)


def _registration(session: Session, agency_code: str) -> tuple[dict[str, Any], str]:
    upstream = f"agency:{agency_code}"
    try:
        found = registered_document(session, agency_code)
    except ValidationError:
        raise PermanentError(f"agency {agency_code}: the stored registration is invalid", upstream=upstream) from None
    if found is None:
        raise PermanentError(f"agency {agency_code} is not registered", upstream=upstream)
    return found


def _read(
    documents_of: AgencyDocuments,
    kind: str,
    code: str,
    agency_code: str,
    payload: Mapping[str, Any],
    session: Session,
) -> _Work:
    registration = _registration(session, agency_code)
    if kind == messages.AGENCY_WITHDRAW:
        return _work(kind, code, agency_code, payload, registration, None)
    body = documents_of(session, [(code, agency_code)]).get((code, agency_code))
    return _work(kind, code, agency_code, payload, registration, body)


def _work(
    kind: str,
    code: str,
    agency_code: str,
    payload: Mapping[str, Any],
    registration: tuple[dict[str, Any], str],
    body: dict[str, Any] | None,
) -> _Work:
    """What one message needs, given its agency's registration and (but to withdraw) its dossier's document."""
    upstream = f"agency:{agency_code}"
    document, protocol = registration
    if kind == messages.AGENCY_WITHDRAW:
        return _Work(registration=document, protocol=protocol)
    if body is None:
        raise PermanentError(f"no dossier {code}", upstream=upstream)
    if kind == messages.AGENCY_DELIVER:
        return _Work(registration=document, protocol=protocol, body=body)
    wanted = payload.get("components")
    codes = {c for c in wanted if isinstance(c, str)} if isinstance(wanted, list) else None
    components = [c for c in body.get("components", []) if codes is None or c.get("code") in codes]
    if not components:
        raise PermanentError(f"dossier {code} has none of the supplemented components", upstream=upstream)
    return _Work(registration=document, protocol=protocol, components=components)


def _read_ahead(documents_of: AgencyDocuments, session: Session, claimed: list[MessageView]) -> list[MessageView]:
    """The claimed agency messages with what their deliveries need (see :meth:`AgencyHandler.prepare`)."""
    named: dict[int, tuple[str, str]] = {}
    for message in claimed:
        try:
            code, agency_code = _names(message, "dossier_code", "agency_code")
        except PermanentError:
            continue
        named[message.id] = (code, agency_code)
    wanted = sorted({named[m.id] for m in claimed if m.id in named and m.kind != messages.AGENCY_WITHDRAW})
    bodies = documents_of(session, wanted) if wanted else {}
    registrations: dict[str, tuple[dict[str, Any], str]] = {}
    result = []
    for message in claimed:
        if message.id not in named:
            result.append(message)
            continue
        code, agency_code = named[message.id]
        try:
            if agency_code not in registrations:
                registrations[agency_code] = _registration(session, agency_code)
            work = _work(
                message.kind,
                code,
                agency_code,
                message.payload,
                registrations[agency_code],
                bodies.get((code, agency_code)),
            )
        except PermanentError:  # its delivery reads again and fails the same way, recorded as such
            result.append(message)
            continue
        result.append(dataclasses.replace(message, prepared=work))
    return result


def _question_work(agency_code: str, question_id: int, session: Session) -> _Work:
    registration, protocol = _registration(session, agency_code)
    question = session.get(Question, question_id)
    if question is None:
        raise PermanentError(f"no question {question_id}", upstream=f"agency:{agency_code}")
    return _Work(registration=registration, protocol=protocol, body=agency_view(question))


def _names(message: MessageView, *keys: str) -> tuple[str, ...]:
    payload = message.payload
    values = [payload.get(key) for key in keys]
    if "agency_code" in keys:
        index = keys.index("agency_code")
        values[index] = values[index] or message.target
    if not all(isinstance(v, str) and v for v in values):
        raise PermanentError(f"the message names no {' or '.join(keys)}", upstream=message.target)
    return tuple(str(v) for v in values)


class AgencyHandler:
    """Delivers the agency message kinds through the agencies' one-stop clients."""

    kinds = frozenset({*messages.AGENCY_KINDS, messages.AGENCY_FEE_PAID, messages.AGENCY_QUESTION})

    def __init__(self, ctx: Context, clients: AgencyClients, documents_of: AgencyDocuments) -> None:
        self.ctx = ctx
        self.clients = clients
        self.documents_of = documents_of

    def prepare(self, session: Session, claimed: list[MessageView]) -> list[MessageView]:
        """Read ahead, in the claim's unit of work, what the claimed deliveries, supplements and withdrawals need:
        each agency's registration once, the dossiers together, and their files and fee rules in one query each for
        the whole batch, so that a delivery starts with its document instead of a unit of work of its own. Fee
        notices and questions read for themselves."""
        ahead = [m for m in claimed if m.kind in messages.AGENCY_KINDS]
        if not ahead:
            return claimed
        prepared = {m.id: m for m in _read_ahead(self.documents_of, session, ahead)}
        return [prepared.get(m.id, m) for m in claimed]

    async def handle(self, message: MessageView) -> None:
        if message.kind == messages.AGENCY_FEE_PAID:
            await self._fee_paid(message)
            return
        if message.kind == messages.AGENCY_QUESTION:
            await self._question(message)
            return
        code, agency_code = _names(message, "dossier_code", "agency_code")
        work = message.prepared
        if not isinstance(work, _Work):
            read = functools.partial(_read, self.documents_of, message.kind, code, agency_code, message.payload)
            work = await self.ctx.db.run(read)
        if work.protocol not in ("rest", "soap"):
            raise PermanentError(f"protocol {work.protocol!r} is not supported", upstream=f"agency:{agency_code}")
        async with self.clients.use(agency_code, work.registration) as client:
            try:
                await self._send(client, message, work, code, agency_code)
            except ValueError as exc:  # a dossier code or key the client refuses to send
                raise PermanentError(f"cannot send: {exc}", upstream=f"agency:{agency_code}") from None

    @staticmethod
    async def _send(client: OneStopClient, message: MessageView, work: _Work, code: str, agency_code: str) -> None:
        extra = {"dossier_code": code, "agency_code": agency_code}
        if message.kind == messages.AGENCY_DELIVER:
            receipt = await client.deliver(work.body, message.idempotency_key)
            log.info(
                "dossier delivered",
                extra={**extra, "duplicate": receipt.duplicate, "status_code": receipt.status_code},
            )
        elif message.kind == messages.AGENCY_SUPPLEMENT:
            await client.supplement(code, work.components, message.idempotency_key)
            log.info("supplement delivered", extra=extra)
        else:
            reason = message.payload.get("reason")
            await client.withdraw(code, reason if isinstance(reason, str) else "", message.idempotency_key)
            log.info("withdrawal delivered", extra=extra)

    async def _fee_paid(self, message: MessageView) -> None:
        code, agency_code, reference = _names(message, "dossier_code", "agency_code", "reference")
        notice = await self.ctx.db.run(
            functools.partial(fee_paid_notice, code=code, agency_code=agency_code, reference=reference)
        )
        extra = {"dossier_code": code, "agency_code": agency_code}
        async with self.clients.use(agency_code, notice.document) as client:
            if notice.protocol == "soap" or not isinstance(client, FeePaidReceiver):
                log.info(
                    "agency not told of the payment: its contract has no such operation",
                    extra={**extra, "reference": reference},
                )
                return
            try:
                await client.fee_paid(code, notice.body, message.idempotency_key)
            except ValueError as exc:
                raise PermanentError(f"cannot send: {exc}", upstream=f"agency:{agency_code}") from None
        log.info("agency told of the payment", extra=extra)

    async def _question(self, message: MessageView) -> None:
        (agency_code,) = _names(message, "agency_code")
        question_id = message.payload.get("question_id")
        if isinstance(question_id, bool) or not isinstance(question_id, int):
            raise PermanentError("the message names no question", upstream=message.target)
        read = functools.partial(_question_work, agency_code, question_id)
        work = await self.ctx.db.run(read)
        extra = {"agency_code": agency_code, "question_id": question_id}
        async with self.clients.use(agency_code, work.registration) as client:
            if work.protocol != "rest" or not isinstance(client, QuestionReceiver):
                raise PermanentError("the agency's contract takes no questions", upstream=f"agency:{agency_code}")
            try:
                await client.send_question(work.body, message.idempotency_key)
            except ValueError as exc:
                raise PermanentError(f"cannot send: {exc}", upstream=f"agency:{agency_code}") from None
        log.info("question delivered", extra=extra)

    async def aclose(self) -> None:
        await self.clients.aclose()
