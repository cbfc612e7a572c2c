"""The fee payment flow: payments created when fees fall due, the transaction query job, and the agency's notice.

The provider notifies the gateway (:mod:`gateway.api.routes_payments`) and the use cases of
:mod:`gateway.services.settlement` settle the payment; the agency flow delivers ``agency.fee_paid`` with
:func:`fee_paid_notice`; :class:`PaymentInitHandler` creates the national payment platform's payments. The
composition root builds the providers (:mod:`gateway.bootstrap.upstreams`).
"""

from gateway.flows.payment.agency_notice import FeePaidNotice, fee_paid_notice
from gateway.flows.payment.jobs import periodic_jobs, query_pending
from gateway.flows.payment.national import NationalPaymentInit, PaymentInitHandler
from gateway.flows.payment.reactions import STEP_SKIPPED, subscriptions
from gateway.flows.payment.settings import PaymentSettings
from gateway.flows.payment.view import payment_view

__all__ = [
    "STEP_SKIPPED",
    "FeePaidNotice",
    "NationalPaymentInit",
    "PaymentInitHandler",
    "PaymentSettings",
    "fee_paid_notice",
    "payment_view",
    "periodic_jobs",
    "query_pending",
    "subscriptions",
]
