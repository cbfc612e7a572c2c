"""Everything a running gateway shares, built once from the configuration: database, trust store and verifier,
office calendar, outbox policy, registry settings and API tokens.

The API and the workers receive a :class:`Runtime`; tests build one on a temporary database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from adapters.http import ClientFactory, default_factory
from signing.trust import TrustMaterialError, TrustStore
from signing.verify import Verifier

from .config import Config, ConfigError, load_config
from .domain.calendar import OfficeCalendar
from .outbox import RetryPolicy
from .registry import RegistrySettings
from .store.database import Database
from .store.engine import DEFAULT_URL

#: Bodies larger than this are refused with 413 before they are parsed (a dossier with its files, base64).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: One component's decoded size.
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
#: Where fetched WSDLs are kept for restarts with the agency unreachable (``[registry] wsdl_cache_dir``).
DEFAULT_WSDL_CACHE_DIR = "./var/wsdl-cache"


@dataclass
class Runtime:
    config: Config
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config | None = None) -> Runtime:
        config = config or load_config()
        url = config.section("database").get("url", DEFAULT_URL)
        if not isinstance(url, str) or not url:
            raise ConfigError("[database] url must be a database URL string")
        return cls(config=config, db=Database.connect(url))

    @cached_property
    def trust_store(self) -> TrustStore:
        try:
            return TrustStore.load(self.config.signing)
        except TrustMaterialError as exc:
            raise ConfigError(f"[signing] {exc}") from exc

    @cached_property
    def verifier(self) -> Verifier:
        return Verifier(self.trust_store, settings=self.config.signing)

    @cached_property
    def calendar(self) -> OfficeCalendar:
        try:
            return OfficeCalendar.from_config(self.config.section("calendar"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        try:
            return RetryPolicy.from_config(self.config.section("outbox"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

    @cached_property
    def registry_settings(self) -> RegistrySettings:
        return RegistrySettings.from_config(self.config)

    @cached_property
    def client_factory(self) -> ClientFactory:
        """The one HTTP client factory of the process (``extras["client_factory"]``, else the process-wide one),
        with the ``[recording]`` section's recording or replay wrapper on top (:mod:`gateway.recording.runtime`)."""
        from .recording.runtime import client_factory_for  # [recording]: record or replay every outbound exchange

        factory = self.extras.get("client_factory")
        return client_factory_for(self.config, factory if isinstance(factory, ClientFactory) else default_factory)

    @property
    def wsdl_cache_dir(self) -> Path:
        """``[registry] wsdl_cache_dir`` (relative to the configuration file's directory), ``./var/wsdl-cache``."""
        value = self.config.section("registry").get("wsdl_cache_dir", DEFAULT_WSDL_CACHE_DIR)
        if not isinstance(value, str) or not value:
            raise ConfigError("[registry] wsdl_cache_dir must be a directory path")
        return self.config.path(value)

    @property
    def max_body_bytes(self) -> int:
        return int(self.config.section("server").get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))

    @property
    def max_file_bytes(self) -> int:
        return int(self.config.section("server").get("max_file_bytes", DEFAULT_MAX_FILE_BYTES))

    def close(self) -> None:
        if "verifier" in self.__dict__:
            self.verifier.close()
        self.db.dispose()
