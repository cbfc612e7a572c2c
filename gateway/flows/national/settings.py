"""The ``[national_portal]`` section: where the national public-service portal is, the province's account on it
(the password as a reference, resolved at each login), the province's and the unit's codes, and batching.

Without ``base_url`` the integration is off and :class:`gateway.settings.Settings` holds ``None`` for it; an empty
string stands for a key not given.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from adapters.errors import AuthError
from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy

from ... import messages
from ...config import ConfigError, PositiveInt, PositiveNumber, SecretRef, Section, Text, WebUrl

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_TIMEOUT_SECONDS", "NationalPortalSettings"]

UPSTREAM = messages.NATIONAL_TARGET
DEFAULT_TIMEOUT_SECONDS = 15.0
DEFAULT_BATCH_SIZE = 10


class NationalPortalSettings(Section):
    """The ``[national_portal]`` section: ``base_url``, ``username``, ``password`` (a literal, ``env:NAME`` or
    ``file:PATH``; the attribute ``password_ref``), ``dstcode`` (the province's code), ``madonvi`` (the unit's
    code), ``timeout_seconds`` and ``batch_size`` (progress records per call)."""

    blank_means_unset = True

    base_url: WebUrl
    username: Text
    password_ref: SecretRef = Field(alias="password", repr=False)
    dstcode: Text
    madonvi: Text
    timeout_seconds: PositiveNumber = DEFAULT_TIMEOUT_SECONDS
    batch_size: PositiveInt = DEFAULT_BATCH_SIZE

    @field_validator("username", "dstcode", "madonvi")
    @classmethod
    def _stripped(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def client_settings(self) -> ClientSettings:
        """How to reach the portal (the province's network allowed, link-local addresses never)."""
        try:
            return ClientSettings(
                base_url=self.base_url,
                timeout_seconds=self.timeout_seconds,
                connect_timeout_seconds=min(5.0, self.timeout_seconds),
                total_timeout_seconds=max(self.timeout_seconds, 1.0) * 2,
                address_policy=AddressPolicy(allow_private=True),
            )
        except ValueError as exc:
            raise ConfigError(f"[national_portal] base_url: {exc}") from None

    def password(self) -> str:
        """The password, resolved now (a reference that cannot be resolved is an :class:`AuthError`)."""
        try:
            return self.password_ref.resolve("[national_portal] password")
        except ConfigError as exc:
            raise AuthError(f"credentials unavailable: {exc}", upstream=UPSTREAM) from None
