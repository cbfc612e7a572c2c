"""The daemon's structured logs: one JSON object per line on stderr.

Every line carries ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``, then the record's extra fields
(``log.info("outbox message dead", extra={"message_id": 7})`` gives ``"message_id": 7``); a message that is itself a
JSON object (the API's access log) contributes its fields. Exceptions add ``exc_type`` and ``traceback`` (the
frames: file, line and function, no source text); the exception's own text is kept only for the adapters' and the
configuration's errors, whose messages are written to be safe, because other exceptions (a validation error, a
database error) may quote the data they choked on.

Personal data never reaches the log:

- the ``pyhanko`` and ``pyhanko_certvalidator`` loggers are raised to ERROR: they name certificate subjects, which
  are people's names and ID numbers;
- the gateway's own code logs codes, counts and digests, never applicants;
- as a last line of defence every message and string field is scrubbed of what looks like an ID number or a phone
  number (a run of 9 to 12 digits) and of e-mail addresses.

:func:`setup_logging` installs the handler on the root logger (uvicorn's loggers propagate to it); it is idempotent.
It also sends Python warnings there, as records of the ``py.warnings`` logger (``"message": "UserWarning: …"`` and
``warned_at``, the file and line that warned), instead of two lines of plain text on stderr; and so are an exception
no code caught in a thread and one Python could not raise (in a finaliser, say): one record each on the
``gateway.uncaught`` logger, with the exception's type and frames as for any other record, never Python's own
traceback text, which quotes the exception's message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
import warnings
from datetime import UTC, datetime
from typing import IO, Any

from adapters.errors import UpstreamError

from .config import ConfigError

__all__ = ["QUIET_LOGGERS", "JsonFormatter", "scrub", "setup_logging"]

#: Loggers that would write personal data (certificate subjects) at levels below ERROR.
QUIET_LOGGERS = ("pyhanko", "pyhanko_certvalidator")
#: Loggers that are too chatty for a daemon's INFO level.
_CHATTY_LOGGERS = ("httpx", "httpcore", "aiohttp", "alembic", "sqlalchemy", "asyncio", "multipart")

_RESERVED = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime", "taskName"}
)
# Uvicorn decorates its own records with terminal colours; they are not fields.
_IGNORED_EXTRAS = frozenset({"color_message"})
#: Exceptions whose text is written to be safe in logs (no payloads quoted).
_SAFE_EXCEPTIONS: tuple[type[BaseException], ...] = (UpstreamError, ConfigError, TimeoutError, ConnectionError)

_DIGITS = re.compile(r"(?<![\w.+])\+?\d{9,12}(?![\w.])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MAX_TEXT = 4000


def scrub(text: str) -> str:
    """``text`` with ID-number-like and phone-like digit runs and e-mail addresses replaced by ``[redacted]``."""
    text = _EMAIL.sub("[redacted]", text)
    text = _DIGITS.sub("[redacted]", text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _field(value: Any) -> Any:
    """An extra field as JSON can carry it, strings scrubbed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_field(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _field(item) for key, item in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return scrub(str(value))


def _json_object(message: str) -> dict[str, Any] | None:
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string must not lose the line
            message = str(record.msg)
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(message),
        }
        fields = _json_object(message)
        if fields is not None:  # a message that is itself a JSON object (an access log line): its fields, merged
            entry["message"] = scrub(str(fields.pop("message", fields.get("event", ""))))
            for key, value in fields.items():
                entry.setdefault(str(key), _field(value))
        for key, value in record.__dict__.items():
            if key in _RESERVED or key in _IGNORED_EXTRAS or key.startswith("_") or key in entry:
                continue
            entry[key] = _field(value)
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, exc, tb = record.exc_info
            entry["exc_type"] = exc_type.__name__
            if isinstance(exc, _SAFE_EXCEPTIONS):
                entry["exc_message"] = scrub(str(exc))
            # Where it happened, frame by frame: files, lines and functions, never source text or values.
            entry["traceback"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)
            ]
        return json.dumps(entry, ensure_ascii=False, default=str)


_HANDLER_NAME = "dvc-gateway-json"
_warnings_log = logging.getLogger("py.warnings")


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for a process that logs JSON lines: one record, without the warning's source text."""
    _warnings_log.warning("%s: %s", category.__name__, message, extra={"warned_at": f"{filename}:{lineno}"})


_uncaught_log = logging.getLogger("gateway.uncaught")


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: an exception that ended a thread, as one record."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "unknown"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    _uncaught_log.error("uncaught exception in thread %s", name, exc_info=exc_info)  # type: ignore[arg-type]


def _log_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: an exception Python could not raise (in a finaliser, a callback), as one record."""
    exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    where = getattr(unraisable.object, "__qualname__", None) or type(unraisable.object).__name__  # code, not data
    _uncaught_log.error("%s (in %s)", unraisable.err_msg or "Exception ignored", where, exc_info=exc_info)


def setup_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as JSON lines; quiet the libraries that say too much."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Uvicorn's own loggers: let them reach the root handler, formatted like everything else.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    warnings.showwarning = _log_warning
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable
    return handler
