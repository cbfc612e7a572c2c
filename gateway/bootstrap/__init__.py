"""The composition root: the one place that builds the adapters, registers the flows on the bus and the outbox,
and collects the periodic jobs.

A new flow is one package in :mod:`gateway.flows` and one line in :func:`build_bus`, :meth:`Composition._handlers`
and :meth:`Composition.periodic_jobs`. Everything here is built from the typed settings of a
:class:`~gateway.runtime.Runtime`; the use cases get a :class:`~gateway.services.context.Context` and never see
the runtime.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from adapters.alerts import AlertWebhookClient
from adapters.errors import PermanentError
from adapters.http import ClientFactory, ClientSettings, bearer
from adapters.netguard import AddressPolicy
from adapters.onestop.soap import WsdlLoader
from adapters.payment.port import PaymentProvider
from adapters.portal import PortalWebhookClient
from gateway import messages
from gateway.bootstrap import upstreams
from gateway.bootstrap.agency_clients import AgencyClientCache, wsdl_limits
from gateway.bus import MessageBus, merge_subscriptions
from gateway.config import ConfigError
from gateway.delivery import Deliveries, OutboxHandler
from gateway.flows import agency, alerts, portal
from gateway.flows.national import reactions as national
from gateway.flows.payment import jobs as payment_jobs
from gateway.flows.payment import reactions as payment
from gateway.flows.payment.settings import PaymentSettings
from gateway.flows.postal import jobs as postal_jobs
from gateway.flows.postal import reactions as postal
from gateway.periodic import PeriodicJob
from gateway.sections import AlertsSection, PortalSection, ReportsSection
from gateway.services.context import Context
from gateway.services.payments import SignPayment
from gateway.services.report_schedule import write_due_reports
from gateway.store.models import utcnow
from gateway.views import agency_documents
from gateway.workers import MessageView

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.orm import Session

    from gateway.runtime import Runtime

__all__ = ["Composition", "build_bus", "check_settings", "context_of"]

_CONTEXT = "services.context"
#: How often the daemon looks whether a monthly report is due.
REPORTS_INTERVAL_SECONDS = 3600.0


def _signer(settings: PaymentSettings | None) -> SignPayment | None:
    return None if settings is None else upstreams.build_signer(settings)


def build_bus(runtime: Runtime) -> MessageBus:
    """The bus with every configured flow's reactions (an integration that is off records its skipped step)."""
    settings = runtime.settings
    return MessageBus(
        merge_subscriptions(
            portal.subscriptions(settings.portal.webhook_url is not None),
            payment.subscriptions(settings.payment, _signer(settings.payment)),
            postal.subscriptions(settings.postal),
            national.subscriptions(settings.national_portal is not None),
        )
    )


def context_of(runtime: Runtime) -> Context:
    """The use cases' context of ``runtime``, built once (the bus, calendar and verifier of its settings)."""
    found = runtime.extras.get(_CONTEXT)
    if found is None:
        found = Context(
            db=runtime.db,
            bus=build_bus(runtime),
            calendar=runtime.calendar,
            verifier=runtime.verifier,
            max_file_bytes=runtime.settings.server.max_file_bytes,
            signer_must_match_applicant=runtime.settings.signing.signer_must_match_applicant,
        )
        runtime.extras[_CONTEXT] = found
    return found


def check_settings(runtime: Runtime) -> None:
    """Build what the settings describe now, so a daemon refuses to start on a setting it cannot use rather than
    parking every message later (:class:`~gateway.config.ConfigError`)."""
    settings = runtime.settings
    vnpay = settings.payment if settings.payment is not None and settings.payment.vnpay_configured else None
    for section in (vnpay, settings.postal, settings.national_portal):
        if section is not None:
            try:
                section.client_settings()
            except ValueError as exc:
                raise ConfigError(f"{exc}") from None
    if settings.payment is not None:
        upstreams.build_signer(settings.payment)
        if settings.payment.national is not None:
            try:
                settings.payment.national.client_settings()
            except ValueError as exc:
                raise ConfigError(f"[payment.national] {exc}") from None
    if settings.sms.base_url is not None:
        try:
            settings.sms.client_settings()
        except ValueError as exc:
            raise ConfigError(f"{exc}") from None


class _PortalOff:
    """``portal.webhook`` (and ``portal.question_answer``) messages left from a time the webhook was configured:
    parked, never retried."""

    kinds = frozenset({messages.PORTAL_WEBHOOK, messages.PORTAL_QUESTION_ANSWER})

    async def handle(self, message: MessageView) -> None:
        raise PermanentError("[portal] webhook_url is not configured", upstream=messages.PORTAL_TARGET)

    async def aclose(self) -> None:
        return None


def _webhook_http(target: str, section: PortalSection | AlertsSection, factory: ClientFactory) -> httpx.AsyncClient:
    """The HTTP client of a configured webhook (the operator's own receivers: private addresses allowed)."""
    assert section.webhook_url is not None
    timeout = float(section.timeout_seconds)
    client_settings = ClientSettings(
        base_url=section.webhook_url,
        timeout_seconds=timeout,
        connect_timeout_seconds=min(5.0, timeout),
        total_timeout_seconds=max(timeout, 1.0) * 2,
        address_policy=AddressPolicy(allow_private=True),
    )
    token = section.token
    auth = bearer(token.resolve) if token is not None else None
    return factory.client(target, client_settings, auth=auth)


def _portal_handler(section: PortalSection, factory: ClientFactory) -> OutboxHandler:
    if section.webhook_url is None:
        return _PortalOff()
    http = _webhook_http(messages.PORTAL_TARGET, section, factory)
    return portal.PortalWebhookHandler(PortalWebhookClient(http, section.webhook_url))


def _alerts_handler(section: AlertsSection, factory: ClientFactory) -> OutboxHandler | None:
    if section.webhook_url is None:
        return None
    http = _webhook_http(messages.ALERTS_TARGET, section, factory)
    return alerts.AlertWebhookHandler(AlertWebhookClient(http, section.webhook_url))


def _monthly_reports_job(context: Context, section: ReportsSection) -> PeriodicJob:
    """Last month's report of every agency, written once from ``[reports] schedule_day`` until the 19th."""

    async def run() -> list[str]:
        return await write_due_reports(
            context.db,
            context.calendar,
            schedule_day=section.schedule_day,
            directory=section.directory,
            now=utcnow(),
        )

    return PeriodicJob("monthly_reports", REPORTS_INTERVAL_SECONDS, run)


class Composition:
    """Everything one gateway process runs beside the API: the outbox deliveries, the poller, the periodic jobs,
    and the clients they share (closed by :meth:`aclose`)."""

    def __init__(self, runtime: Runtime, *, factory: ClientFactory | None = None) -> None:
        self.runtime = runtime
        self.context = context_of(runtime)
        self.factory = factory or runtime.client_factory
        registry = runtime.settings.registry
        self.wsdl_loader = WsdlLoader()
        self.agency_clients = AgencyClientCache(
            self.factory,
            address_policy=AddressPolicy(allow_private=registry.allow_private_endpoints),
            wsdl_loader=self.wsdl_loader,
            wsdl_cache_dir=registry.wsdl_cache_dir,
            wsdl_limits=wsdl_limits(registry),
        )
        self.poller = agency.Poller(self.context, self.agency_clients, runtime.settings.poller)
        self._payment_http: Any = None
        self._national_http: Any = None
        self.deliveries = Deliveries(self._handlers())

    def _handlers(self) -> list[OutboxHandler]:
        settings = self.runtime.settings
        handlers: list[OutboxHandler] = [
            agency.AgencyHandler(self.context, self.agency_clients, agency_documents),
            _portal_handler(settings.portal, self.factory),
        ]
        if settings.national_portal is not None:
            handlers.append(upstreams.sync_handler(self.context, settings.national_portal, self.factory))
        if settings.postal is not None:
            self.postal = upstreams.order_handler(self.context, settings.postal, self.factory)
            handlers.append(self.postal)
        if settings.payment is not None and settings.payment.national is not None:
            handlers.append(upstreams.payment_init_handler(self.context, settings.payment, self.factory))
        if settings.sms.base_url is not None:
            handlers.append(upstreams.sms_handler(settings.sms, self.factory))
        alert_handler = _alerts_handler(settings.alerts, self.factory)
        if alert_handler is not None:
            handlers.append(alert_handler)
        return handlers

    @functools.cached_property
    def payment_provider(self) -> PaymentProvider | None:
        """The VNPay-style provider of ``[payment]`` with its API client (none when payment is off or only the national
        platform is configured)."""
        settings = self.runtime.settings.payment
        if settings is None or not settings.vnpay_configured:
            return None
        try:
            self._payment_http = self.factory.client(messages.PAYMENT_TARGET, settings.client_settings())
        except ValueError as exc:
            raise ConfigError(f"[payment] base_url: {exc}") from None
        return upstreams.build_provider(settings, self._payment_http)

    @functools.cached_property
    def other_payment_providers(self) -> dict[str, PaymentProvider]:
        """The providers beside ``[payment]``'s default, by ``Payment.provider`` (the national platform's)."""
        settings = self.runtime.settings.payment
        if settings is None or settings.national is None:
            return {}
        try:
            self._national_http = self.factory.client(
                f"{messages.PAYMENT_TARGET}:national", settings.national.client_settings()
            )
        except ValueError as exc:
            raise ConfigError(f"[payment.national] base_url: {exc}") from None
        return {"national": upstreams.build_national_provider(settings, self._national_http)}

    def periodic_jobs(self) -> list[PeriodicJob]:
        """The jobs of what is on: the poller, the payment query, the postal tracking, the deadline watch's alerts."""
        settings = self.runtime.settings
        jobs = agency.periodic_jobs(self.poller)
        jobs += payment_jobs.periodic_jobs(
            self.context,
            settings.payment,
            self.payment_provider,
            sign=_signer(settings.payment),
            others=self.other_payment_providers,
        )
        if settings.postal is not None:
            jobs += postal_jobs.periodic_jobs(self.context, settings.postal, self.postal.client)
        jobs += alerts.periodic_jobs(self.context, settings.alerts, settings.watch)
        jobs.append(_monthly_reports_job(self.context, settings.reports))
        return jobs

    def prepare(self, session: Session, messages: list[MessageView]) -> list[MessageView]:
        """Read ahead what the claimed ``messages`` need, in the claim's unit of work
        (:class:`gateway.workers.Preparer`)."""
        return self.deliveries.prepare(session, messages)

    async def dispatch(self, message: MessageView) -> None:
        """Deliver one outbox message (the workers' dispatcher)."""
        await self.deliveries.dispatch(message)

    @property
    def counters(self) -> dict[str, int]:
        return self.deliveries.counters

    async def aclose(self) -> None:
        await self.deliveries.aclose()
        for http in (self._payment_http, self._national_http):
            if http is not None:
                await http.aclose()
        self._payment_http = self._national_http = None
