"""Administration answers: agency registrations and outbox messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .base import Answer

__all__ = ["AgencyList", "AgencyRegistration", "OutboxMessageView", "OutboxPage"]


class AgencyRegistration(Answer):
    """An agency's registration document as stored (secrets as the ``env:``/``file:`` references given)."""

    code: str
    name: str
    protocol: str = Field(description="rest or soap")
    endpoint: str | None
    wsdl: str | None
    procedures: list[str]
    auth: dict[str, Any]
    status_updates: dict[str, Any]
    mapping: dict[str, Any] | None


class AgencyList(Answer):
    agencies: list[AgencyRegistration]


class OutboxMessageView(Answer):
    """One outbox message."""

    id: int
    kind: str
    target: str
    ordering_key: str | None
    idempotency_key: str
    payload: dict[str, Any]
    state: str = Field(description="pending, in_flight, done or dead")
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    done_at: datetime | None


class OutboxPage(Answer):
    messages: list[OutboxMessageView]
    stats: dict[str, int] = Field(description="the number of messages in each state")
