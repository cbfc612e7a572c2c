"""The upstream clients of the flows, built from their typed settings over the process's one HTTP client factory.

This is the one place the gateway names the concrete adapters of the payment platform, the postal service and the
national portal; the flows see only their ports (:class:`~adapters.payment.port.PaymentProvider`,
:class:`~adapters.postal.port.PostalService`, :class:`~adapters.national_portal.port.NationalPortal`). Secrets are
resolved when a request needs them, never kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from adapters.errors import AuthError
from adapters.http import ClientFactory
from adapters.national_portal import NationalPortalClient
from adapters.payment import NationalPaymentProvider, PaymentProvider, PaymentRequest, VNPayProvider
from adapters.postal import PostalClient, PostalService
from adapters.sms import SmsClient
from gateway import messages
from gateway.config import ConfigError
from gateway.flows.national.handler import NationalSyncHandler
from gateway.flows.national.settings import NationalPortalSettings
from gateway.flows.payment.national import PaymentInitHandler
from gateway.flows.payment.settings import PaymentSettings
from gateway.flows.postal.handler import PostalOrderHandler
from gateway.flows.postal.settings import PostalSettings
from gateway.flows.sms import SmsSendHandler
from gateway.sections import SmsSection
from gateway.services.context import Context
from gateway.services.payments import SignPayment

__all__ = [
    "VNPAY_OFF",
    "build_national_provider",
    "build_portal",
    "build_postal_client",
    "build_provider",
    "build_signer",
    "open_portal",
    "order_handler",
    "payment_init_handler",
    "sms_handler",
    "sync_handler",
]

#: Why nothing of the VNPay-style provider can be built: ``[payment]`` without its keys (the national platform only).
VNPAY_OFF = "[payment] the VNPay-style provider is not configured (no base_url, merchant_code, secret)"


def _vnpay(settings: PaymentSettings, http: Any, **options: Any) -> VNPayProvider:
    if settings.merchant_code is None or settings.payment_url is None:
        raise ConfigError(VNPAY_OFF)
    try:
        return VNPayProvider(
            http,
            merchant_code=settings.merchant_code,
            secret=settings.resolve_secret,
            payment_url=settings.payment_url,
            query_path=settings.query_path,
            expire_minutes=settings.expire_minutes,
            server_ip=settings.server_ip,
            upstream=messages.PAYMENT_TARGET,
            **options,
        )
    except ValueError as exc:
        raise ConfigError(f"[payment] {exc}") from None


def build_provider(settings: PaymentSettings, http: Any = None) -> PaymentProvider:
    """The VNPay-style provider ``settings`` describe, querying through ``http`` (an ``httpx.AsyncClient`` from the
    factory, not closed by the provider; ``None`` when only notifications are verified or settlements reconciled);
    :class:`ConfigError` when it is not configured (:attr:`PaymentSettings.vnpay_configured`)."""
    return _vnpay(settings, http)


def build_national_provider(settings: PaymentSettings, http: Any = None) -> NationalPaymentProvider:
    """The national payment platform's client of ``[payment.national]`` over ``http`` (from the factory, not closed
    by it; ``None`` to verify notifications or reconcile only); :class:`ConfigError` when the table is missing."""
    national = settings.national
    if national is None:
        raise ConfigError("[payment.national]: is not configured")
    return NationalPaymentProvider(
        http,
        partner_code=national.partner_code,
        secret=national.resolve_secret,
        upstream=f"{messages.PAYMENT_TARGET}:national",
    )


def payment_init_handler(ctx: Context, settings: PaymentSettings, factory: ClientFactory) -> PaymentInitHandler:
    """The ``payment.init`` handler over the national platform's client built through ``factory`` (closed with it)."""
    national = settings.national
    if national is None:
        raise ConfigError("[payment.national]: is not configured")
    try:
        http = factory.client(f"{messages.PAYMENT_TARGET}:national", national.client_settings())
    except ValueError as exc:
        raise ConfigError(f"[payment.national] base_url: {exc}") from None
    return PaymentInitHandler(ctx, build_national_provider(settings, http), settings, close=http.aclose)


def _unsigned(
    reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str, *, now: datetime
) -> PaymentRequest:
    raise ConfigError(VNPAY_OFF)


def build_signer(settings: PaymentSettings) -> SignPayment:
    """Signs a payer's URL with the merchant's key, the payment created at the ``now`` it is given; settings the
    provider refuses are a :class:`ConfigError` now. Without the VNPay-style provider (no dossier's fees go to it)
    every call is a :class:`ConfigError`."""
    if not settings.vnpay_configured:
        return _unsigned
    _vnpay(settings, None)

    def sign(
        reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str, *, now: datetime
    ) -> PaymentRequest:
        provider = _vnpay(settings, None, clock=lambda: now)
        return provider.build_payment(reference, amount_vnd, description, return_url, client_ip)

    return sign


def build_portal(settings: NationalPortalSettings, http: Any) -> NationalPortalClient:
    """The national portal's client over ``http`` (from the factory, its ``base_url`` the portal's), which it does
    not close; the password is resolved at each login."""
    return NationalPortalClient(
        http,
        username=settings.username,
        password=settings.password,
        dstcode=settings.dstcode,
        madonvi=settings.madonvi,
        batch_size=settings.batch_size,
        upstream=messages.NATIONAL_TARGET,
    )


@contextlib.asynccontextmanager
async def open_portal(settings: NationalPortalSettings, factory: ClientFactory) -> AsyncIterator[NationalPortalClient]:
    """A client of the configured portal for one piece of work (a command's); its HTTP client closed after."""
    async with factory.client(messages.NATIONAL_TARGET, settings.client_settings()) as http:
        yield build_portal(settings, http)


def sync_handler(ctx: Context, settings: NationalPortalSettings, factory: ClientFactory) -> NationalSyncHandler:
    """The ``national.sync`` handler over a client built through ``factory``; closing it closes the client."""
    http = factory.client(messages.NATIONAL_TARGET, settings.client_settings())
    return NationalSyncHandler(ctx, build_portal(settings, http), settings, close=http.aclose)


def build_postal_client(settings: PostalSettings, http: Any) -> PostalService:
    """The postal client over ``http`` (not closed by it). A secret that cannot be resolved is an authentication
    failure: the message is parked, not retried."""

    def secret() -> str:
        try:
            return settings.resolve_secret()
        except ConfigError as exc:
            raise AuthError(f"credentials unavailable: {exc}", upstream=messages.POSTAL_TARGET) from None

    return PostalClient(http, secret=secret, attempts=settings.attempts, upstream=messages.POSTAL_TARGET)


def order_handler(ctx: Context, settings: PostalSettings, factory: ClientFactory) -> PostalOrderHandler:
    """The ``postal.order`` handler over a client built through ``factory``; closing it closes the client."""
    try:
        http = factory.client(messages.POSTAL_TARGET, settings.client_settings())
    except ValueError as exc:
        raise ConfigError(f"[postal] base_url: {exc}") from None
    return PostalOrderHandler(ctx, build_postal_client(settings, http), settings, close=http.aclose)


def sms_handler(settings: SmsSection, factory: ClientFactory) -> SmsSendHandler:
    """The ``sms.send`` handler over the SMS gateway's client built through ``factory`` (closed with it). A secret
    that cannot be resolved is an authentication failure: the message is parked, not retried."""

    def secret() -> str:
        try:
            value = settings.resolve_secret()
        except ConfigError as exc:
            raise AuthError(f"credentials unavailable: {exc}", upstream=messages.SMS_TARGET) from None
        if value is None:
            raise AuthError("[sms] secret is not set", upstream=messages.SMS_TARGET)
        return value

    try:
        http = factory.client(messages.SMS_TARGET, settings.client_settings())
    except ValueError as exc:
        raise ConfigError(f"[sms] base_url: {exc}") from None
    return SmsSendHandler(SmsClient(http, secret=secret, upstream=messages.SMS_TARGET))
