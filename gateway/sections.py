"""The typed sections of the configuration file that belong to no single flow: server, database, catalogue, registry,
API tokens, the portal's webhook, signing, outbox, agency poller, recording, office calendar, the alert webhook, the
deadline watch, the console, reports, questions and lookup by SMS.

Each model keeps the defaults and limits the gateway applies and refuses keys it does not know; the flows' sections
are in ``gateway.flows.<flow>.settings`` and the whole file is :class:`gateway.settings.Settings`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, Strict, ValidationInfo, field_validator

from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy

from .config import (
    BASE_DIR,
    ConfigError,
    ConfigPath,
    Flag,
    NonNegativeNumber,
    PositiveInt,
    PositiveNumber,
    SecretRef,
    Section,
    SigningSection,
    Text,
    WebUrl,
)
from .domain.calendar import DEFAULT_AFTERNOON, DEFAULT_MORNING, OfficeCalendar
from .domain.codes import is_valid_agency_code
from .official_calendar import OfficialDataError, load_official_calendar, load_official_calendar_file
from .recording.settings import FaultRule, RecordingSettings
from .store.engine import DEFAULT_URL, resolve_sqlite_url, url_problem

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_WSDL_CACHE_DIR",
    "AlertsSection",
    "AuthSection",
    "CalendarSection",
    "CatalogueSection",
    "ConsoleSection",
    "DatabaseSection",
    "FaultRule",
    "OutboxSection",
    "PollerSection",
    "PortalSection",
    "QuestionsSection",
    "RecordingSettings",
    "RegistrySection",
    "ReportsSection",
    "ServerSection",
    "SigningSection",
    "SmsSection",
    "TokenEntry",
    "WatchSection",
    "office_calendar",
]

#: Bodies larger than this are refused with 413 before they are parsed (a dossier with its files, base64).
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: One component's decoded size.
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024
#: Where fetched WSDLs are kept for restarts with the agency unreachable.
DEFAULT_WSDL_CACHE_DIR = "./var/wsdl-cache"
#: Where the daemon writes the monthly reports.
DEFAULT_REPORTS_DIR = "./var/reports"

_HEX_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
_SESSION_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

Port = Annotated[int, Strict(), Field(ge=0, le=65535)]


class ServerSection(Section):
    """``[server]``: where the API listens (port 0: a free one), the largest request body and decoded file, whether
    ``/metrics`` answers without an admin token, and the event loop ``serve`` and ``worker`` run on (``auto``:
    uvloop where it is installed, else asyncio's own)."""

    host: Text = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: PositiveInt = DEFAULT_MAX_BODY_BYTES
    max_file_bytes: PositiveInt = DEFAULT_MAX_FILE_BYTES
    public_metrics: Flag = False
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"


class DatabaseSection(Section):
    """``[database]``: the SQLAlchemy URL of a SQLite or PostgreSQL database.

    A relative SQLite file (the default ``sqlite:///./var/gateway.db`` too) is made absolute from the configuration
    file's directory, or from the working directory without a file, so every command run with the same file opens
    the same database wherever it is run from."""

    url: Text = Field(default=DEFAULT_URL, validate_default=True)

    @field_validator("url")
    @classmethod
    def _usable(cls, value: str, info: ValidationInfo) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        base = info.context.get(BASE_DIR) if isinstance(info.context, Mapping) else None
        return resolve_sqlite_url(value, base) if isinstance(base, Path) else value


class CatalogueSection(Section):
    """``[catalogue]``: the procedure catalogue file ``procedure import`` reads when given none."""

    path: ConfigPath | None = None


class RegistrySection(Section):
    """``[registry]``: what agency registrations may point at, where fetched WSDLs are kept, and the limits on
    loading one (each document's size, their total size and number, the time to fetch and parse them).

    ``allow_insecure_http`` unset means "as ``allow_private_endpoints``"."""

    allow_private_endpoints: Flag = False
    allow_insecure_http: Flag | None = None
    strict_secrets: Flag = True
    wsdl_cache_dir: ConfigPath = Field(default=Path(DEFAULT_WSDL_CACHE_DIR), validate_default=True)
    wsdl_max_document_bytes: PositiveInt = 8 * 1024 * 1024
    wsdl_max_total_bytes: PositiveInt = 16 * 1024 * 1024
    wsdl_max_documents: PositiveInt = 32
    wsdl_load_timeout_seconds: PositiveNumber = 60.0


def _role(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string: portal, admin or agency:<agency code>")
    if value in ("portal", "admin"):
        return value
    if value.startswith("agency:"):
        code = value.removeprefix("agency:")
        if not is_valid_agency_code(code):
            raise ValueError(f"{code!r} is not an agency code (e.g. agency:000.00.23.H38)")
        return value
    raise ValueError(f"must be portal, admin or agency:<agency code>, got {value!r}")


#: ``portal``, ``admin`` or ``agency:<agency code>``.
Role = Annotated[str, BeforeValidator(_role)]


class TokenEntry(Section):
    """One ``[[auth.tokens]]`` table: the ``token`` (a literal, ``env:NAME``, ``file:PATH`` or ``sha256:<64 hex
    digits>`` of the token) and the ``role`` it stands for."""

    token: SecretRef
    role: Role

    @field_validator("token")
    @classmethod
    def _digest_form(cls, token: SecretRef) -> SecretRef:
        reference = token.reference
        if reference.startswith("sha256:") and _HEX_DIGEST_RE.match(reference.removeprefix("sha256:")) is None:
            raise ValueError("sha256: must be followed by 64 hexadecimal digits")
        return token


class AuthSection(Section):
    """``[auth]``: the API tokens (none: every authenticated endpoint answers 401)."""

    tokens: tuple[TokenEntry, ...] = ()


class PortalSection(Section):
    """``[portal]``: the provincial portal's webhook (unset: not notified), its bearer token and timeout."""

    blank_means_unset = True

    webhook_url: WebUrl | None = None
    token: SecretRef | None = None
    timeout_seconds: PositiveNumber = 10.0


class OutboxSection(Section):
    """``[outbox]``: the retry policy and the per-agency circuit breaker. The attributes are named as in
    :class:`gateway.outbox.RetryPolicy` and :class:`gateway.workers.CircuitBreakerSettings`; the keys are
    ``attempts``, ``backoff_initial_seconds``, ``backoff_max_seconds``, ``jitter_seconds``, ``lease_seconds``,
    ``concurrency_per_agency``, ``breaker_failures`` and ``breaker_cooldown_seconds``."""

    max_attempts: PositiveInt = Field(default=8, alias="attempts")
    initial_seconds: PositiveNumber = Field(default=2.0, alias="backoff_initial_seconds")
    max_seconds: PositiveNumber = Field(default=600.0, alias="backoff_max_seconds", validate_default=True)
    jitter_seconds: NonNegativeNumber = 2.0
    lease_seconds: PositiveNumber = 60.0
    concurrency_per_agency: PositiveInt = 4
    failure_threshold: PositiveInt = Field(default=5, alias="breaker_failures")
    cooldown_seconds: PositiveNumber = Field(default=30.0, alias="breaker_cooldown_seconds")

    @field_validator("max_seconds")
    @classmethod
    def _not_below_initial(cls, value: float, info: ValidationInfo) -> float:
        initial = info.data.get("initial_seconds")
        if initial is not None and value < initial:
            raise ValueError(f"must be at least backoff_initial_seconds ({initial:g})")
        return value


class PollerSection(Section):
    """``[poller]``: how often due agencies are looked for, how long a poll's lease lasts, how many run at once."""

    tick_seconds: PositiveNumber = 10.0
    lease_seconds: PositiveNumber = 300.0
    concurrency: PositiveInt = 8


def _dates(value: Any) -> tuple[date, ...]:
    items = [value] if isinstance(value, str | date) else value
    if not isinstance(items, list | tuple):
        raise ValueError('must be a list of dates "YYYY-MM-DD"')
    days: list[date] = []
    for item in items:
        if isinstance(item, datetime):
            raise ValueError(f"{item.isoformat()} is a date and time, expected a date YYYY-MM-DD")
        if isinstance(item, date):
            days.append(item)
            continue
        if not isinstance(item, str) or not _DATE_RE.fullmatch(item.strip()):
            raise ValueError(f'{item!r} is not a date "YYYY-MM-DD"')
        try:
            days.append(date.fromisoformat(item.strip()))
        except ValueError:
            raise ValueError(f"{item!r} is not a valid date") from None
    return tuple(sorted(set(days)))


def _session(value: Any) -> tuple[time, time]:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(t, time) for t in value):
        start, end = value
    else:
        match = _SESSION_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f'must be a time range "HH:MM-HH:MM", got {value!r}')
        h1, m1, h2, m2 = (int(group) for group in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"{value!r} is not a valid time range")
        start, end = time(h1, m1), time(h2, m2)
    if start >= end:
        raise ValueError(f"the session must end after it starts, got {value!r}")
    return start, end


Days = Annotated[tuple[date, ...], BeforeValidator(_dates)]
Session = Annotated[tuple[time, time], BeforeValidator(_session)]


class CalendarSection(Section):
    """``[calendar]``: the province's extra days off and make-up working days (``"YYYY-MM-DD"`` or TOML dates) and
    the office sessions (``"HH:MM-HH:MM"``), over the official calendar data shipped with the gateway (or a newer
    file of the same format, ``official_data``) and the ``holidays`` package (:func:`office_calendar`): a day given
    here wins over both."""

    extra_holidays: Days = ()
    makeup_working_days: Days = ()
    morning: Session = DEFAULT_MORNING
    afternoon: Session = Field(default=DEFAULT_AFTERNOON, validate_default=True)
    official_data: ConfigPath | None = None

    @field_validator("official_data")
    @classmethod
    def _official_data_usable(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                load_official_calendar_file(value)
            except OfficialDataError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("makeup_working_days")
    @classmethod
    def _not_also_off(cls, value: tuple[date, ...], info: ValidationInfo) -> tuple[date, ...]:
        both = set(value) & set(info.data.get("extra_holidays", ()))
        if both:
            raise ValueError(f"{', '.join(d.isoformat() for d in sorted(both))} also listed in extra_holidays")
        return value

    @field_validator("afternoon")
    @classmethod
    def _after_the_morning(cls, value: tuple[time, time], info: ValidationInfo) -> tuple[time, time]:
        morning = info.data.get("morning")
        if morning is not None and morning[1] > value[0]:
            raise ValueError(f"must start at or after the morning session ends ({morning[1].strftime('%H:%M')})")
        return value


def office_calendar(calendar: CalendarSection) -> OfficeCalendar:
    """The office calendar the ``[calendar]`` section describes, over the official calendar data shipped with the
    gateway (:mod:`gateway.official_calendar`)."""
    return OfficeCalendar(
        extra_days_off=frozenset(calendar.extra_holidays),
        makeup_working_days=frozenset(calendar.makeup_working_days),
        morning=calendar.morning,
        afternoon=calendar.afternoon,
        official=(
            load_official_calendar()
            if calendar.official_data is None
            else load_official_calendar_file(calendar.official_data)
        ),
    )


class ReportsSection(Section):
    """``[reports]``: from which day of the month (1 to 19: reports are due before the 20th) the daemon writes last
    month's report of every agency, and the folder it writes them in (relative to the configuration file's)."""

    schedule_day: Annotated[int, Strict(), Field(ge=1, le=19)] = 15
    directory: ConfigPath = Field(default=Path(DEFAULT_REPORTS_DIR), validate_default=True)


class AlertsSection(Section):
    """``[alerts]``: where deadline-watch alerts are posted as JSON (unset: none are sent), with an optional bearer
    token and the timeout of one post."""

    blank_means_unset = True

    webhook_url: WebUrl | None = None
    token: SecretRef | None = None
    timeout_seconds: PositiveNumber = 10.0


class ConsoleSection(Section):
    """``[console]``: the key signing the operators' console sessions (unset: a random key per process, so sessions end
    when it restarts and several processes behind one address need a shared key), how long a session lasts, and how
    many lookups one client address may make per minute on the citizens' page."""

    session_secret: SecretRef | None = None
    session_hours: PositiveNumber = 8.0
    lookup_per_minute: PositiveInt = 30


class WatchSection(Section):
    """``[watch]``: how many working hours before its due date a dossier counts as near it, and how often the
    deadline watch looks for dossiers to alert about."""

    near_due_hours: PositiveNumber = 8.0
    interval_seconds: PositiveNumber = 300.0


class QuestionsSection(Section):
    """``[questions]``: how many working days an agency has to answer a citizen's question; an unanswered question
    past them appears in the deadline watch."""

    answer_within_days: PositiveInt = 5


class SmsSection(Section):
    """``[sms]``: the SMS gateway's API (unset: lookup by SMS is off), the shared secret signing both directions, the
    timeout of one send, and how many replies one phone number may get per hour."""

    blank_means_unset = True

    base_url: WebUrl | None = None
    secret: SecretRef | None = None
    timeout_seconds: PositiveNumber = 10.0
    replies_per_hour: PositiveInt = 5

    def resolve_secret(self) -> str | None:
        """The shared secret, now (``None`` when not set; :class:`ConfigError` when it cannot be resolved)."""
        if self.secret is None:
            return None
        value = self.secret.resolve("[sms] secret")
        if not value:
            raise ConfigError("[sms] secret: is empty")
        return value

    def client_settings(self) -> ClientSettings:
        """How to reach the SMS gateway's API (the operator's own configuration: private addresses allowed)."""
        if self.base_url is None:
            raise ValueError("[sms] base_url: is not set")
        return ClientSettings(
            base_url=self.base_url,
            timeout_seconds=self.timeout_seconds,
            connect_timeout_seconds=min(5.0, self.timeout_seconds),
            total_timeout_seconds=max(self.timeout_seconds, 1.0) * 2,
            address_policy=AddressPolicy(allow_private=True),
        )
