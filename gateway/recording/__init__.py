"""Recording and replay of outbound HTTP exchanges.

Every outbound exchange passes one httpx transport chain (:class:`adapters.http.ClientFactory`), so SOAP and REST
are recorded alike, as HAR 1.2 files (:mod:`.har`), redacted before they touch disk (:mod:`.redact`). Replay answers
from those files without any network (:mod:`.transport`), matching requests as :mod:`.match` describes; a cassette
directory can also be served over HTTP as fake upstreams (:mod:`.server`).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names and their modules, imported on first use (so pytest loading the plugin imports nothing heavy).
_EXPORTS = {
    "Exchange": "har",
    "HarError": "har",
    "dump_har": "har",
    "load_har": "har",
    "loads_har": "har",
    "write_har": "har",
    "MatchSettings": "match",
    "NoMatch": "match",
    "ReplayIndex": "match",
    "Redactor": "redact",
    "FaultRule": "settings",
    "RecordingSettings": "settings",
    "install": "transport",
    "recording_wrapper": "transport",
    "replay_wrapper": "transport",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = [
    "Exchange",
    "FaultRule",
    "HarError",
    "MatchSettings",
    "NoMatch",
    "RecordingSettings",
    "Redactor",
    "ReplayIndex",
    "dump_har",
    "install",
    "load_har",
    "loads_har",
    "recording_wrapper",
    "replay_wrapper",
    "write_har",
]
