"""Lookup by SMS: the reply to a citizen's ``TRACUU <code>`` (or ``TC <code>``) text, queued for the SMS gateway.

The reply carries what the public lookup shows, nothing personal: the status, its Vietnamese label (the national
portal's words) with the national status code, and the due date, in one SMS of Vietnamese without diacritics. An
unknown code or a text that is not a lookup gets a reply saying how to ask. The reply goes through the outbox
(``sms.send``), once per inbound text; the sender's number is kept only in that message and named elsewhere by
:func:`phone_key`, a hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from adapters.sms.wire import fit_sms, lookup_code
from gateway import messages, outbox
from gateway.domain.codes import parse_dossier_code
from gateway.store.models import OutboxMessage, utcnow

__all__ = ["SmsReply", "phone_key", "queue_reply", "replies_within_hour", "reply_text"]

#: How to ask, in every reply that is not a dossier's status.
USAGE = "Soan: TRACUU <ma ho so> (vi du TRACUU 000.00.23.H38-261203-0001)"


@dataclass(frozen=True)
class SmsReply:
    """What a text gets back: ``outcome`` (``found``, ``unknown`` or ``syntax``) and the reply's text."""

    outcome: str
    text: str


def phone_key(number: str, key: str) -> str:
    """A stable pseudonym of a phone number (its digits, ``+84`` read as ``0``) for logs and rate limits: keyed with
    ``key`` (the SMS secret), so the few possible numbers cannot be hashed one by one to find it."""
    digits = "".join(c for c in number if c.isdigit())
    if number.strip().startswith("+84") or (digits.startswith("84") and len(digits) == 11):
        digits = "0" + digits[2:]
    return hmac.new(key.encode("utf-8"), f"sms-phone:{digits}".encode(), hashlib.sha256).hexdigest()[:16]


def _due(text: str | None) -> str:
    return datetime.fromisoformat(text).strftime("%d/%m/%Y") if text else "chua xac dinh"


def reply_text(text: str, lookup: Callable[[str], Mapping[str, Any] | None]) -> SmsReply:
    """The reply to an inbound ``text``; ``lookup`` gives a dossier code's public lookup view (``None``: no such
    dossier)."""
    code = lookup_code(text)
    if not code:
        return SmsReply("syntax", fit_sms(f"Sai cu phap. {USAGE}"))
    try:
        parse_dossier_code(code)
    except ValueError:
        return SmsReply("unknown", fit_sms(f"Ma ho so {code[:40]} khong hop le. {USAGE}"))
    view = lookup(code)
    if view is None:
        return SmsReply("unknown", fit_sms(f"Khong tim thay ho so {code}. Kiem tra ma tren giay tiep nhan. {USAGE}"))
    late = " (qua han)" if view.get("overdue") else ""
    reply = (
        f"HS {code}: {view['status_label']} (TT {view['national_status_code']}, {view['status']}). "
        f"Hen tra: {_due(view.get('due_at'))}{late}."
    )
    return SmsReply("found", fit_sms(reply))


#: The replies queued to one number (its ordering key) since a time, counted through the ordering key's index.
_REPLIES_SINCE = (
    select(func.count())
    .select_from(OutboxMessage)
    .where(OutboxMessage.ordering_key == bindparam("key"), OutboxMessage.created_at >= bindparam("since"))
)


def _ordering_key(phone: str) -> str:
    return f"sms:{phone}"


def replies_within_hour(session: Session, phone: str) -> int:
    """How many replies were queued to the number of :func:`phone_key` ``phone`` in the last hour, by any process
    (counted in the outbox, where the replies are; the outbox stamps them with the real time)."""
    since = utcnow() - timedelta(hours=1)
    return int(session.scalar(_REPLIES_SINCE, {"key": _ordering_key(phone), "since": since}) or 0)


def queue_reply(session: Session, *, to: str, reply: SmsReply, inbound_key: str, phone: str) -> None:
    """Queue ``reply`` to ``to`` (``phone``: its :func:`phone_key`): one ``sms.send`` per inbound message key (a
    repeat queues nothing)."""
    key = f"sms:{inbound_key}"
    outbox.enqueue(
        session,
        kind=messages.SMS_SEND,
        target=messages.SMS_TARGET,
        payload={"to": to, "text": reply.text},
        idempotency_key=key,
        ordering_key=_ordering_key(phone),
    )
