"""What the agencies' flow needs from the composition root: the one-stop client of each registered agency.

The clients themselves implement :class:`adapters.onestop.port.OneStopClient`; :class:`AgencyClients` hands out the
client of an agency for its current registration document (rebuilt when the registration changes, closed when the
process stops), so deliveries and polls share one client, one set of credentials and one WSDL per agency.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from adapters.onestop.port import Acknowledgement, AgencyStatus, OneStopClient

__all__ = ["AgencyClients", "ChangeFeed", "FeePaidReceiver", "QuestionReceiver"]


class AgencyClients(Protocol):
    """The clients of the registered agencies."""

    def use(self, agency_code: str, document: Mapping[str, Any]) -> AbstractAsyncContextManager[OneStopClient]:
        """The client of ``agency_code`` as registered by ``document``, held for the block (a client replaced by a
        new registration meanwhile is closed once no block holds it)."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """An agency system that reports every dossier changed since a time (the reference SOAP status operation)."""

    async def changes_since(self, since: datetime) -> list[AgencyStatus]: ...


@runtime_checkable
class FeePaidReceiver(Protocol):
    """An agency system that takes payment notices (``/payments`` in ``docs/agency-rest-contract.md``)."""

    async def fee_paid(self, code: str, payment: Mapping[str, Any], idempotency_key: str) -> Acknowledgement: ...


@runtime_checkable
class QuestionReceiver(Protocol):
    """An agency system that takes citizens' questions (``/questions`` in ``docs/agency-rest-contract.md``)."""

    async def send_question(self, question: Mapping[str, Any], idempotency_key: str) -> Acknowledgement: ...
