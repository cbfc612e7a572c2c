"""The API's answers as pydantic models: they *describe* what the routes answer in ``/openapi.json``.

The routes keep answering the read models' dictionaries (:mod:`gateway.views`) as they are; these models are used
in ``responses=`` only, never to filter or re-render an answer. Every model allows properties it does not name, so
a field added to a read model is answered (and conforms) before it is documented here.
"""

from __future__ import annotations

from .citizens import AgencyQuestion, AgencyQuestionList, QuestionView, RatingView
from .dossiers import (
    ComponentView,
    DossierView,
    EventOutcome,
    FeeView,
    HistoryItem,
    LookupView,
    PaymentView,
    ShipmentView,
)
from .errors import ErrorBody, ErrorResponse, error_responses
from .operations import (
    Health,
    NationalPaymentNotificationAnswer,
    PaymentNotificationAnswer,
    PostalEventOutcome,
    Ready,
    SmsInboundOutcome,
)
from .registry import AgencyList, AgencyRegistration, OutboxMessageView, OutboxPage
from .reports import PeriodicReport
from .signatures import SignatureReport, SignatureResult, Signer

__all__ = [
    "AgencyList",
    "AgencyQuestion",
    "AgencyQuestionList",
    "AgencyRegistration",
    "ComponentView",
    "DossierView",
    "ErrorBody",
    "ErrorResponse",
    "EventOutcome",
    "FeeView",
    "Health",
    "HistoryItem",
    "LookupView",
    "NationalPaymentNotificationAnswer",
    "OutboxMessageView",
    "OutboxPage",
    "PaymentNotificationAnswer",
    "PaymentView",
    "PeriodicReport",
    "PostalEventOutcome",
    "QuestionView",
    "RatingView",
    "Ready",
    "ShipmentView",
    "SignatureReport",
    "SignatureResult",
    "Signer",
    "SmsInboundOutcome",
    "error_responses",
]
