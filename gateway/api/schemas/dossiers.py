"""The dossier view (portal, owning agency), the public lookup and the answer to an agency's event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .base import Answer
from .citizens import RatingView
from .signatures import SignatureReport

__all__ = [
    "ComponentView",
    "DossierView",
    "EventOutcome",
    "FeeView",
    "HistoryItem",
    "LookupView",
    "PaymentView",
    "ShipmentView",
]


class ComponentView(Answer):
    """A component (thành phần hồ sơ) in its current revision, with its signature verification."""

    code: str
    name: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    revision: int
    originals_check_required: bool
    verification: SignatureReport | None


class FeeView(Answer):
    """A fee or charge (phí, lệ phí), in VND."""

    code: str
    name: str | None
    amount: int
    paid: bool


class PaymentView(Answer):
    """The dossier's latest online payment."""

    reference: str
    url: str | None
    amount: int
    status: str = Field(description="pending, paid, failed, …")


class ShipmentView(Answer):
    """A postal shipment: collecting originals or returning the result."""

    order_code: str | None = Field(description="none until the postal order is placed")
    kind: str
    status: str


class HistoryItem(Answer):
    """One status change."""

    status: str
    at: datetime
    actor: str | None
    note: str | None
    reason: str | None = None
    step: Any = None


class DossierView(Answer):
    """A dossier as the portal and its agency see it: status, deadlines, components, fees, payment, shipments,
    history."""

    code: str = Field(examples=["000.00.23.H38-261123-0001"])
    status: str = Field(examples=["submitted"])
    national_status_code: int = Field(description="the national portal's status code (1–10)")
    procedure_code: str
    agency_code: str = Field(description="the agency handling the dossier now")
    lead_agency_code: str = Field(description="the agency that received it and returns the result")
    channel: str
    summary: str | None
    applicant: dict[str, Any]
    return_method: str | None
    delivery_address: dict[str, Any] | None
    submitted_at: datetime | None
    received_at: datetime | None
    acknowledge_by: datetime | None
    due_at: datetime | None
    completed_at: datetime | None
    overdue: bool
    repeated_supplement: bool
    originals_check_required: bool
    components: list[ComponentView]
    fees: list[FeeView]
    payment: PaymentView | None
    shipments: list[ShipmentView]
    history: list[HistoryItem]
    rating: RatingView | None = Field(default=None, description="the applicant's rating, once given")
    result: dict[str, Any] | None
    extra: dict[str, Any]


class LookupView(Answer):
    """The public lookup: status and deadlines, nothing personal."""

    code: str
    status: str
    status_label: str = Field(description="the status in Vietnamese")
    national_status_code: int
    received_at: datetime | None
    due_at: datetime | None
    overdue: bool


class EventOutcome(Answer):
    """The dossier after an agency's status event, and whether the event was a repeat."""

    dossier_code: str
    status: str
    national_status_code: int
    agency_code: str
    received_at: datetime | None
    due_at: datetime | None
    duplicate: bool
