"""The ``[recording]`` section: whether outbound exchanges are recorded or replayed, where the cassettes are, what is
redacted and ignored when matching, and the faults injected into replays (``[[recording.faults]]``).

Both models are configuration sections (:class:`gateway.config.Section`): built from the configuration file by
:mod:`gateway.settings`, or directly by tests and the replay tools.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, Strict

from ..config import ConfigPath, Flag, NonNegativeNumber, PositiveInt, Section, Text
from .match import (
    DEFAULT_IGNORE_JSON_KEYS,
    DEFAULT_IGNORE_QUERY_PARAMS,
    DEFAULT_IGNORE_XML_ELEMENTS,
    MatchSettings,
)
from .redact import (
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_JSON_KEYS,
    DEFAULT_REDACT_PARAMS,
    DEFAULT_REDACT_XML_ELEMENTS,
    Redactor,
    directory_salt,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_MAX_FILE_BYTES", "MODES", "FaultRule", "RecordingSettings"]

MODES = ("off", "record", "replay")
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024

Names = tuple[Text, ...]


class FaultRule(Section):
    """A fault injected into replayed exchanges (``[[recording.faults]]``).

    ``kind``: ``delay`` (answer after ``seconds``, then normally), ``drop`` (the connection breaks:
    ``httpx.ConnectError``), ``status`` (answer ``status``, 503 by default, with a JSON error) or ``soap_fault``
    (HTTP 500 with a SOAP 1.1 ``soap:Server`` fault carrying ``message``). The filters: ``method``, ``url_contains``,
    ``upstream`` (``agency:000.00.23.H38``, ``national_portal``...; not under ``replay serve``) and ``body_contains``
    (a dossier code); ``nth`` fires on the n-th request they select only (1-based), ``times`` at most that often.
    """

    kind: Literal["delay", "drop", "status", "soap_fault"]
    method: Text | None = None
    url_contains: Text | None = None
    upstream: Text | None = None
    body_contains: Text | None = None
    nth: PositiveInt | None = None
    times: PositiveInt | None = None
    seconds: NonNegativeNumber = 0.0
    status: Annotated[int, Strict(), Field(ge=400, le=599)] = 503
    message: Annotated[str, Strict()] = "injected fault"

    def applies(self, request: httpx.Request, upstream: str = "", body: bytes = b"") -> bool:
        """Whether ``request`` (of ``upstream``, with ``body``) passes every filter."""
        if self.method and request.method.upper() != self.method.upper():
            return False
        if self.url_contains and self.url_contains not in str(request.url):
            return False
        if self.upstream and self.upstream != upstream:
            return False
        return not (self.body_contains and self.body_contains.encode("utf-8") not in body)


def _latency(value: Any) -> Any:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and value >= 0:
        return value
    raise ValueError("must be true, false or a non-negative factor")


class RecordingSettings(Section):
    """The ``[recording]`` section: ``mode`` (off, record, replay), the cassette ``directory`` (relative to the
    configuration file's directory), the names redacted before anything is written, the parts of a request matching
    ignores, the size of one cassette file, recorded latency replayed (``replay_latency``: true, or a factor), the
    faults injected into replays, and whether the last recorded answer repeats (``repeat_last``)."""

    mode: Literal["off", "record", "replay"] = "off"
    directory: ConfigPath = Field(default=Path("cassettes"), validate_default=True)
    redact_headers: Names = DEFAULT_REDACT_HEADERS
    redact_json_keys: Names = DEFAULT_REDACT_JSON_KEYS
    redact_xml_elements: Names = DEFAULT_REDACT_XML_ELEMENTS
    redact_params: Names = DEFAULT_REDACT_PARAMS
    ignore_json_keys: Names = DEFAULT_IGNORE_JSON_KEYS
    ignore_xml_elements: Names = DEFAULT_IGNORE_XML_ELEMENTS
    ignore_query_params: Names = DEFAULT_IGNORE_QUERY_PARAMS
    match_headers: Names = ()
    max_file_bytes: Annotated[int, Strict(), Field(ge=1024)] = DEFAULT_MAX_FILE_BYTES
    replay_latency: Annotated[NonNegativeNumber, BeforeValidator(_latency)] = 0.0
    faults: tuple[FaultRule, ...] = ()
    repeat_last: Flag = True

    def redactor(self, directory: str | os.PathLike[str]) -> Redactor:
        """The redactor of ``directory``'s cassettes (its salt) with this section's names."""
        return Redactor(
            directory_salt(directory),
            headers=self.redact_headers,
            json_keys=self.redact_json_keys,
            xml_elements=self.redact_xml_elements,
            params=self.redact_params,
        )

    def match_settings(self, *, ignore_host: bool = False) -> MatchSettings:
        """How replay matches requests against the recordings, with this section's ignored parts."""
        return MatchSettings(
            ignore_json_keys=self.ignore_json_keys,
            ignore_xml_elements=self.ignore_xml_elements,
            ignore_query_params=self.ignore_query_params,
            match_headers=self.match_headers,
            ignore_host=ignore_host,
        )
