"""The ``[postal]`` section: where the public postal service's API is, the shared secret signing requests and
authenticating its tracking webhook, timeouts and tries, the tracking poll, and the one-stop office orders name.

Without ``base_url`` the integration is off and :class:`gateway.settings.Settings` holds ``None`` for it; an empty
string stands for a key not given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, Strict

from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy

from ...config import ConfigError, NonNegativeNumber, PositiveInt, SecretRef, Section, WebUrl

__all__ = ["PostalSettings"]

#: At least a millisecond: a zero timeout or poll interval would spin.
Interval = Annotated[float, Strict(), Field(ge=0.001, allow_inf_nan=False)]


class PostalSettings(Section):
    """The ``[postal]`` section: ``base_url``, ``secret``, ``timeout_seconds`` (per network operation),
    ``attempts`` (tries per call before the outbox's own retry takes over), ``poll_interval_seconds`` (how often the
    tracking poll runs), ``poll_after_seconds`` (a shipment not heard of for this long is polled) and
    ``office_name``, ``office_phone``, ``office_address`` (the one-stop office sending results and receiving
    originals: all three are needed to order anything)."""

    blank_means_unset = True

    base_url: WebUrl
    secret: SecretRef | None = None
    timeout_seconds: Interval = 10.0
    attempts: PositiveInt = 3
    poll_interval_seconds: Interval = 300.0
    poll_after_seconds: NonNegativeNumber = 3600.0
    office_name: Annotated[str, Strict()] | None = None
    office_phone: Annotated[str, Strict()] | None = None
    office_address: Annotated[str, Strict()] | None = None

    @property
    def office(self) -> Mapping[str, str] | None:
        """The office's ``name``, ``phone`` and ``address``, or ``None`` unless all three are given."""
        office = {"name": self.office_name, "phone": self.office_phone, "address": self.office_address}
        if all(value and value.strip() for value in office.values()):
            return {key: str(value) for key, value in office.items()}
        return None

    def resolve_secret(self) -> str:
        """The shared secret, resolved now (never kept); :class:`ConfigError` when it is missing."""
        value = self.secret.resolve("[postal] secret") if self.secret is not None else None
        if not value:
            raise ConfigError("[postal] secret: is not configured")
        return value

    def client_settings(self) -> ClientSettings:
        """How to reach the postal API (the operator's own configuration: private networks allowed, link-local and
        metadata addresses never)."""
        return ClientSettings(
            base_url=self.base_url,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=min(5.0, self.timeout_seconds),
            total_timeout_seconds=max(self.timeout_seconds, 1.0) * 2,
            address_policy=AddressPolicy(allow_private=True),
        )
