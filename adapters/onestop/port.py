"""What the core needs from an agency's one-stop system (*một cửa điện tử*), whatever protocol it speaks.

The REST client (:mod:`adapters.onestop.rest`) and the SOAP client implement :class:`OneStopClient`; the core
depends on this interface only. Every method raises :mod:`adapters.errors` on failure (transient, permanent, auth,
bad response), so a result always means the agency accepted or answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["Acknowledgement", "AgencyStatus", "DeliveryReceipt", "OneStopClient"]


@dataclass(frozen=True)
class DeliveryReceipt:
    """The agency accepted a dossier.

    ``duplicate`` is true when it already had it: it answered 409, or replayed its first answer to a repeated
    ``Idempotency-Key``. ``body`` is the agency's answer as received (field names mapped back to ours); it is left
    out of ``repr`` because it may hold personal data.
    """

    dossier_code: str
    duplicate: bool = False
    agency_reference: str | None = None
    status: str | None = None
    received_at: datetime | None = None
    status_code: int | None = None
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class AgencyStatus:
    """Where a dossier stands in the agency's system (the fields of an agency status event)."""

    dossier_code: str
    status: str
    at: datetime | None = None
    note: str | None = None
    reason: str | None = None
    due_at: datetime | None = None
    transfer_to: str | None = None
    result: Any = field(default=None, repr=False)
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Acknowledgement:
    """The agency accepted a supplement or a withdrawal (``duplicate``: a replayed answer to a repeated key)."""

    dossier_code: str
    duplicate: bool = False
    status: str | None = None
    status_code: int | None = None
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)


@runtime_checkable
class OneStopClient(Protocol):
    """An agency one-stop system as the core sees it.

    ``idempotency_key`` identifies one intended effect (the dossier code plus the step): repeating a call with the
    same key never causes a second effect at an agency that honours the key.
    """

    async def deliver(self, dossier: Mapping[str, Any], idempotency_key: str) -> DeliveryReceipt:
        """Hand a dossier over to the agency."""
        ...

    async def get_status(self, code: str) -> AgencyStatus:
        """Ask the agency where dossier ``code`` stands."""
        ...

    async def supplement(
        self, code: str, components: Sequence[Mapping[str, Any]], idempotency_key: str
    ) -> Acknowledgement:
        """Send components added or replaced by the applicant after a supplement request."""
        ...

    async def withdraw(self, code: str, reason: str, idempotency_key: str) -> Acknowledgement:
        """Tell the agency the applicant withdrew the dossier."""
        ...
