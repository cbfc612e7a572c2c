"""The whole configuration as one typed object: :class:`Settings`, one field per section of the TOML file, read by
:func:`load_settings` from the file and its ``DVC_GATEWAY_<SECTION>__<KEY>`` environment overrides.

Every mistake is one :class:`~gateway.config.ConfigError` line, ``[section] key: what is wrong``, raised when the
settings are read, so the gateway refuses to start rather than fail later.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from .config import BASE_DIR, ConfigError, Section, read_configuration, validation_message
from .flows.national.settings import NationalPortalSettings
from .flows.payment.settings import PaymentSettings
from .flows.postal.settings import PostalSettings
from .sections import (
    AlertsSection,
    AuthSection,
    CalendarSection,
    CatalogueSection,
    ConsoleSection,
    DatabaseSection,
    OutboxSection,
    PollerSection,
    PortalSection,
    QuestionsSection,
    RecordingSettings,
    RegistrySection,
    ReportsSection,
    ServerSection,
    SigningSection,
    SmsSection,
    WatchSection,
)

__all__ = ["Settings", "load_settings"]

#: The integrations that are off without a ``base_url``: their field is ``None`` then (``payment`` is also on with
#: its ``[payment.national]`` table alone).
_INTEGRATIONS: dict[str, type[Section]] = {
    "national_portal": NationalPortalSettings,
    "payment": PaymentSettings,
    "postal": PostalSettings,
}


def _keys(model: type[Section]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


class Settings(Section):
    """The gateway's configuration: one field per TOML section; ``national_portal``, ``payment`` and ``postal`` are
    ``None`` when their integration is off (``payment``: neither ``base_url`` nor ``[payment.national]``).
    ``base_dir`` is the directory relative paths started from, ``raw`` the tables the settings were read from (to
    read them again with some sections changed)."""

    server: ServerSection = Field(default_factory=ServerSection)
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    catalogue: CatalogueSection = Field(default_factory=CatalogueSection)
    registry: RegistrySection = Field(default_factory=RegistrySection)
    auth: AuthSection = Field(default_factory=AuthSection)
    portal: PortalSection = Field(default_factory=PortalSection)
    national_portal: NationalPortalSettings | None = None
    payment: PaymentSettings | None = None
    postal: PostalSettings | None = None
    signing: SigningSection = Field(default_factory=SigningSection)
    outbox: OutboxSection = Field(default_factory=OutboxSection)
    poller: PollerSection = Field(default_factory=PollerSection)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    calendar: CalendarSection = Field(default_factory=CalendarSection)
    reports: ReportsSection = Field(default_factory=ReportsSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    watch: WatchSection = Field(default_factory=WatchSection)
    console: ConsoleSection = Field(default_factory=ConsoleSection)
    questions: QuestionsSection = Field(default_factory=QuestionsSection)
    sms: SmsSection = Field(default_factory=SmsSection)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: Any) -> Any:
        """Absent sections are read as empty tables, so their relative paths start from the same directory."""
        if isinstance(data, Mapping):
            return {**{name: {} for name in cls.model_fields}, **data}
        return data

    @field_validator(*_INTEGRATIONS, mode="before")
    @classmethod
    def _off_without_base_url(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping) or value.get("base_url"):
            return value
        if info.field_name == "payment" and value.get("national") is not None:
            return value  # the national payment platform alone
        model = _INTEGRATIONS[str(info.field_name)]
        unknown = sorted(set(value) - _keys(model))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(sorted(_keys(model)))})")
        return None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Settings:
        if self.recording.mode == "replay" and self.signing.online_revocation:
            raise ValueError(
                '[recording] mode: "replay" needs [signing] online_revocation = false: revocation fetches are not '
                "recorded, and replay never touches the network"
            )
        if isinstance(info.context, Mapping) and isinstance(info.context.get(BASE_DIR), Path):
            self._base_dir = info.context[BASE_DIR]
        return self

    @property
    def base_dir(self) -> Path:
        """The directory relative paths started from: the configuration file's (else the working directory)."""
        return self._base_dir

    @property
    def raw(self) -> dict[str, Any]:
        """The tables these settings were read from (the TOML file with its overrides; empty when built directly)."""
        return self._raw

    @classmethod
    def from_raw(
        cls,
        raw: Mapping[str, Any],
        base_dir: Path,
        *,
        origins: Mapping[tuple[str, ...], str] | None = None,
    ) -> Settings:
        """The settings of TOML tables ``raw`` with relative paths from ``base_dir`` (:class:`ConfigError`: one line;
        ``origins`` names the environment variables behind overridden keys for the message)."""
        try:
            settings = cls.model_validate(raw, context={BASE_DIR: base_dir})
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, model=cls, origins=origins)) from None
        settings._raw = copy.deepcopy(dict(raw))
        return settings


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the file ``path`` (else ``$DVC_GATEWAY_CONFIG``, else none: every default) with the overrides
    of ``environ`` (``os.environ`` when not given); :class:`ConfigError` in one line for a missing file, bad TOML,
    an unknown section or key, or a bad value."""
    raw = read_configuration(path, environ)
    return Settings.from_raw(raw.data, raw.base_dir, origins=raw.origins)
