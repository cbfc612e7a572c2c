"""The fee payment flow: payments created when fees fall due, the transaction query job, and the agency's notice.

The provider notifies the gateway (:mod:`gateway.api.routes_payments`) and the use cases of
:mod:`gateway.services.settlement` settle the payment; the agency flow delivers ``agency.fee_paid`` with
:func:`fee_paid_notice`; :class:`PaymentInitHandler` creates the national payment platform's payments. The
composition root builds the providers (:mod:`gateway.bootstrap.upstreams`).

Modules: ``settings`` (``[payment]``), ``reactions`` (``subscriptions``), ``jobs`` (``periodic_jobs``,
``query_pending``), ``national`` (``PaymentInitHandler``), ``agency_notice`` (``fee_paid_notice``), ``view``
(``payment_view``). The package itself imports none of them, so reading the configuration (which needs only the
settings) loads no database or HTTP client.
"""
