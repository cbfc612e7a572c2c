"""The ``[payment]`` section: where the payment platforms are, the merchant's identity and secret, where payers
return, and how the gateway creates, queries and reconciles payments.

Without ``base_url`` and without the ``[payment.national]`` table the integration is off and
:class:`gateway.settings.Settings` holds ``None`` for it; an empty string stands for a key not given. The VNPay-style
keys (``base_url``, ``merchant_code``, ``secret``) are required only when ``vnpay`` takes payments somewhere (or one
of them is given): a province paid only through the national platform leaves them out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy

from ...config import ConfigError, Flag, PositiveInt, PositiveNumber, SecretRef, Section, Text, WebUrl

__all__ = [
    "DEFAULT_PAYMENT_PATH",
    "DEFAULT_QUERY_PATH",
    "NATIONAL",
    "PROVIDER",
    "VNPAY",
    "VNPAY_KEYS",
    "NationalPaymentSettings",
    "PaymentSettings",
]

VNPAY = "vnpay"
NATIONAL = "national"
#: The default provider.
PROVIDER = VNPAY
ProviderName = Literal["vnpay", "national"]
DEFAULT_PAYMENT_PATH = "/paymentv2/vpcpay.html"
DEFAULT_QUERY_PATH = "/merchant_webapi/api/transaction"
#: The keys of the VNPay-style provider with no default: required when it takes payments (``payment_url`` is derived
#: from ``base_url`` when not given).
VNPAY_KEYS = ("base_url", "merchant_code", "secret")


def _client_settings(base_url: str, timeout_seconds: float) -> ClientSettings:
    """How to reach a provider's API (the operator's own configuration: private addresses allowed)."""
    return ClientSettings(
        base_url=base_url,
        timeout_seconds=timeout_seconds,
        connect_timeout_seconds=min(5.0, timeout_seconds),
        total_timeout_seconds=max(timeout_seconds, 1.0) * 2,
        address_policy=AddressPolicy(allow_private=True),
    )


class NationalPaymentSettings(Section):
    """The ``[payment.national]`` table: the national payment platform's API (``base_url``; ``init`` and ``query``
    are below it), the gateway's partner code there (``MaDoiTac``), the shared secret of ``MaXacThuc``, the timeout,
    and where ``payment reconcile --provider national --date`` downloads its settlement file."""

    base_url: WebUrl
    partner_code: Text
    secret: SecretRef
    timeout_seconds: PositiveNumber = 10.0
    settlement_url: WebUrl | None = None

    def resolve_secret(self) -> str:
        """The shared secret, now (:class:`ConfigError` when the reference cannot be resolved)."""
        value = self.secret.resolve("[payment.national] secret")
        if not value:
            raise ConfigError("[payment.national] secret: is empty")
        return value

    def client_settings(self) -> ClientSettings:
        return _client_settings(self.base_url, self.timeout_seconds)


class PaymentSettings(Section):
    """The ``[payment]`` section: ``return_url`` (the provincial portal's page the payer's browser comes back to,
    whichever provider), the VNPay-style provider's ``base_url`` (its API host), ``merchant_code``, ``secret``,
    ``payment_url`` (default ``{base_url}/paymentv2/vpcpay.html``), ``query_path``, ``timeout_seconds``,
    ``query_interval_seconds``, ``query_after_minutes``, ``expire_minutes`` (how long the payer's URL is valid),
    ``at_submission`` (a payment at intake when fees are due), ``server_ip`` (``vnp_IpAddr``) and ``settlement_url``
    (where ``payment reconcile --date`` downloads the settlement file, ``{date}`` standing for ``yyyyMMdd``).

    Which provider takes a dossier's fees: ``provider`` (``vnpay``, the default, or ``national``), overridden per
    procedure (``by_procedure``) or per agency (``by_agency``); ``national`` needs the ``[payment.national]``
    table (:class:`NationalPaymentSettings`), ``vnpay`` the keys of :data:`VNPAY_KEYS`. Without them (``vnpay``
    chosen nowhere) :attr:`vnpay_configured` is false: nothing of the VNPay-style provider is built."""

    blank_means_unset = True

    base_url: WebUrl | None = None
    merchant_code: Text | None = None
    secret: SecretRef | None = None
    payment_url: WebUrl | None = None
    return_url: WebUrl
    query_path: Text = DEFAULT_QUERY_PATH
    timeout_seconds: PositiveNumber = 10.0
    query_interval_seconds: PositiveNumber = 300.0
    query_after_minutes: PositiveInt = 15
    expire_minutes: PositiveInt = 1440
    at_submission: Flag = True
    server_ip: Text = "127.0.0.1"
    settlement_url: WebUrl | None = None
    provider: ProviderName = "vnpay"
    by_procedure: dict[str, ProviderName] = Field(default_factory=dict)
    by_agency: dict[str, ProviderName] = Field(default_factory=dict)
    national: NationalPaymentSettings | None = None

    @model_validator(mode="after")
    def _national_configured(self) -> PaymentSettings:
        chosen = {self.provider, *self.by_procedure.values(), *self.by_agency.values()}
        if NATIONAL in chosen and self.national is None:
            raise ValueError('"national" is chosen but the [payment.national] table is missing')
        return self

    @model_validator(mode="after")
    def _vnpay_keys_given(self) -> PaymentSettings:
        chosen = {self.provider, *self.by_procedure.values(), *self.by_agency.values()}
        given = [key for key in (*VNPAY_KEYS, "payment_url") if getattr(self, key) is not None]
        missing = [key for key in VNPAY_KEYS if getattr(self, key) is None]
        if not missing:
            return self
        required = f"{', '.join(missing)}: {'is' if len(missing) == 1 else 'are'} required"
        if VNPAY in chosen:
            raise ValueError(f'{required} when "vnpay" takes payments (provider, by_procedure or by_agency)')
        if given:
            raise ValueError(f"{required} with {given[0]} (the VNPay-style provider)")
        return self

    @property
    def vnpay_configured(self) -> bool:
        """Whether the VNPay-style provider is configured (its keys given; required when it takes payments)."""
        return self.base_url is not None

    def provider_for(self, procedure_code: str, agency_code: str) -> str:
        """The provider of a dossier's payments: its procedure's, else its agency's, else ``provider``."""
        return self.by_procedure.get(procedure_code) or self.by_agency.get(agency_code) or self.provider

    @model_validator(mode="before")
    @classmethod
    def _default_payment_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("payment_url") and isinstance(data.get("base_url"), str):
            return {**data, "payment_url": data["base_url"].rstrip("/") + DEFAULT_PAYMENT_PATH}
        return data

    @field_validator("query_path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    def resolve_secret(self) -> str:
        """The merchant's secret, now (:class:`ConfigError` when the reference cannot be resolved or not given)."""
        if self.secret is None:
            raise ConfigError("[payment] secret: is not configured")
        value = self.secret.resolve("[payment] secret")
        if not value:
            raise ConfigError("[payment] secret: is empty")
        return value

    def client_settings(self) -> ClientSettings:
        """How to reach the VNPay-style provider's API (private addresses allowed: the operator's configuration);
        :class:`ConfigError` when it is not configured."""
        if self.base_url is None:
            raise ConfigError("[payment] base_url: is not configured")
        return _client_settings(self.base_url, self.timeout_seconds)
