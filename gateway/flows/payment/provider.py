"""The payment platform's client as the flow's port: the one place the payment flow names the concrete provider.

:func:`build_provider` makes the VNPay-style provider of the ``[payment]`` settings over an HTTP client from the
process's client factory (for transaction queries; ``None`` when only notifications are verified or settlements
reconciled). :func:`build_signer` signs payers' URLs locally, at the time of the change that made the fees due.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

from adapters.payment import PaymentProvider, PaymentRequest, VNPayProvider
from gateway.config import ConfigError
from gateway.flows.payment.settings import PaymentSettings
from gateway.services.payments import OnlinePayment, SignPayment

__all__ = ["UPSTREAM", "HttpClient", "build_provider", "build_signer", "online_payment"]

#: The upstream name of the provider's API (client factory, recordings, errors).
UPSTREAM = "payment"

#: The HTTP client :meth:`adapters.http.ClientFactory.client` gives (an ``httpx.AsyncClient``).
HttpClient: TypeAlias = Any


def _vnpay(settings: PaymentSettings, http: HttpClient | None, **options: Any) -> VNPayProvider:
    try:
        return VNPayProvider(
            http,
            merchant_code=settings.merchant_code,
            secret=settings.resolve_secret,
            payment_url=settings.payment_url,
            query_path=settings.query_path,
            expire_minutes=settings.expire_minutes,
            server_ip=settings.server_ip,
            upstream=UPSTREAM,
            **options,
        )
    except ValueError as exc:
        raise ConfigError(f"[payment] {exc}") from None


def build_provider(settings: PaymentSettings, http: HttpClient | None = None) -> PaymentProvider:
    """The provider ``settings`` describe, querying through ``http`` (its ``base_url`` the provider's API host, not
    closed by the provider); the merchant's secret is resolved when needed, never kept. :class:`ConfigError` for
    settings the provider refuses."""
    return _vnpay(settings, http)


def build_signer(settings: PaymentSettings) -> SignPayment:
    """Signs a payer's URL with the merchant's key, the payment created at the ``now`` it is given; settings the
    provider refuses are a :class:`ConfigError` now."""
    _vnpay(settings, None)

    def sign(
        reference: str, amount_vnd: int, description: str, return_url: str, client_ip: str, *, now: datetime
    ) -> PaymentRequest:
        provider = _vnpay(settings, None, clock=lambda: now)
        return provider.build_payment(reference, amount_vnd, description, return_url, client_ip)

    return sign


def online_payment(settings: PaymentSettings | None, sign: SignPayment | None = None) -> OnlinePayment | None:
    """What the payment use cases need of ``settings`` (``None`` when payment is off); ``sign`` by default
    :func:`build_signer`'s."""
    if settings is None:
        return None
    return OnlinePayment(settings, sign if sign is not None else build_signer(settings))
