"""Everything a running gateway shares, built once from the settings: database, trust store and verifier, office
calendar, outbox policy, registry settings and the HTTP client factory.

The API and the workers receive a :class:`Runtime`; its ``settings`` are the typed :class:`~gateway.settings.Settings`.
Tests build one on a temporary database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from adapters.http import ClientFactory, default_factory
from signing.trust import TrustMaterialError, TrustStore
from signing.verify import Verifier

from .config import ConfigError
from .domain.calendar import OfficeCalendar
from .metrics import GatewayMetrics
from .outbox import RetryPolicy
from .recording.runtime import client_factory_for
from .registry import RegistrySettings
from .sections import office_calendar
from .settings import Settings
from .store.database import Database

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """The shared state of one gateway process: its settings, its database and what tests put in ``extras`` (say,
    a ``client_factory``). What the settings name is loaded on first use."""

    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, db: Database, *, extras: dict[str, Any] | None = None) -> Runtime:
        """The runtime of ``settings`` on ``db``."""
        return cls(settings=settings, db=db, extras=extras or {})

    @cached_property
    def trust_store(self) -> TrustStore:
        try:
            return TrustStore.load(self.settings.signing.trust_settings())
        except TrustMaterialError as exc:
            raise ConfigError(f"[signing] {exc}") from exc

    @cached_property
    def verifier(self) -> Verifier:
        trust = self.settings.signing.trust_settings()
        return Verifier(self.trust_store, settings=trust, budget=trust.budget)

    @cached_property
    def calendar(self) -> OfficeCalendar:
        return office_calendar(self.settings.calendar)

    @cached_property
    def metrics(self) -> GatewayMetrics:
        """The process's Prometheus metrics (the API, the outbox worker and the jobs of this runtime share them)."""
        return GatewayMetrics()

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.of(self.settings.outbox)

    @cached_property
    def registry_settings(self) -> RegistrySettings:
        return RegistrySettings.of(self.settings)

    @cached_property
    def client_factory(self) -> ClientFactory:
        """The one HTTP client factory of the process (``extras["client_factory"]``, else the process-wide one),
        with the ``[recording]`` section's recording or replay wrapper on top (:mod:`gateway.recording.runtime`)."""
        factory = self.extras.get("client_factory")
        base = factory if isinstance(factory, ClientFactory) else default_factory
        return client_factory_for(self.settings.recording, base)

    @property
    def wsdl_cache_dir(self) -> Path:
        """``[registry] wsdl_cache_dir`` (relative to the configuration file's directory), ``./var/wsdl-cache``."""
        return self.settings.registry.wsdl_cache_dir

    @property
    def max_body_bytes(self) -> int:
        return self.settings.server.max_body_bytes

    @property
    def max_file_bytes(self) -> int:
        return self.settings.server.max_file_bytes

    def close(self) -> None:
        if "verifier" in self.__dict__:
            self.verifier.close()
        self.db.dispose()
