"""Row counts of the intake tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from gateway.store.models import (
    AuditEntry,
    Blob,
    Component,
    DaySequence,
    Dossier,
    Fee,
    HistoryEntry,
    IdempotencyRecord,
    OutboxMessage,
)
from tests.api_support import Gateway


def count(gw: Gateway, model: Any) -> int:
    with gw.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


def counts(gw: Gateway) -> dict[str, int]:
    models = (Dossier, Component, Fee, HistoryEntry, Blob, OutboxMessage, AuditEntry, IdempotencyRecord, DaySequence)
    return {model.__name__: count(gw, model) for model in models}
