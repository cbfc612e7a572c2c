"""The daemon's JSON log lines (``gateway.logging``): shape, extra fields, exceptions, personal data kept out."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from adapters.errors import TransientError
from gateway.logging import JsonFormatter, scrub, setup_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_extra_fields(captured: io.StringIO) -> None:
    logging.getLogger("gateway.workers").info(
        "outbox message dead", extra={"message_id": 7, "target": "000.00.23.H38", "ok": False}
    )
    logging.getLogger("gateway.test").debug("below the level")
    [entry] = lines(captured)
    assert entry["level"] == "info"
    assert entry["logger"] == "gateway.workers"
    assert entry["message"] == "outbox message dead"
    assert entry["message_id"] == 7
    assert entry["target"] == "000.00.23.H38"
    assert entry["ok"] is False
    assert entry["time"].endswith("+00:00")


def test_a_json_message_contributes_its_fields(captured: io.StringIO) -> None:
    logging.getLogger("gateway.access").info(json.dumps({"event": "http_request", "status": 201, "route": "/x"}))
    [entry] = lines(captured)
    assert entry["message"] == "http_request"
    assert entry["status"] == 201
    assert entry["route"] == "/x"
    assert entry["logger"] == "gateway.access"


def test_exceptions_keep_frames_and_only_safe_messages(captured: io.StringIO) -> None:
    log = logging.getLogger("gateway.test")
    try:
        raise ValueError("input was Nguyễn Văn A, 001099012345")
    except ValueError:
        log.exception("validation blew up")
    try:
        raise TransientError("timed out", upstream="agency:000.00.23.H38")
    except TransientError:
        log.exception("delivery failed")
    first, second = lines(captured)
    assert first["exc_type"] == "ValueError"
    assert "exc_message" not in first
    assert "Nguyễn" not in json.dumps(first, ensure_ascii=False)
    assert any("test_exceptions_keep_frames" in frame for frame in first["traceback"])
    assert second["exc_message"] == "agency:000.00.23.H38: timed out"


def test_personal_data_patterns_are_scrubbed(captured: io.StringIO) -> None:
    logging.getLogger("gateway.test").warning(
        "call %s or mail %s", "0912345678", "a@example.vn", extra={"id": "079123456789"}
    )
    [entry] = lines(captured)
    assert "0912345678" not in entry["message"]
    assert "a@example.vn" not in entry["message"]
    assert entry["id"] == "[redacted]"
    # Dossier codes, request ids, durations and counts are not personal data.
    for text in (
        "000.00.23.H38-261123-0001",
        "b4e547d5051e442e878b7a9b0d5294b7",
        "12.5",
        "1048576",
        "vm-7066-bf895d5c",
    ):
        assert scrub(text) == text
    assert scrub("CCCD 001099012345") == "CCCD [redacted]"
    assert scrub("+84912345678") == "[redacted]"


def test_certificate_subjects_are_not_logged(captured: io.StringIO) -> None:
    assert logging.getLogger("pyhanko").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("pyhanko_certvalidator").getEffectiveLevel() == logging.ERROR
    logging.getLogger("pyhanko.sign.validation").warning("Signer: CN=Nguyễn Văn A")
    logging.getLogger("pyhanko_certvalidator.fetchers").info("fetched for CN=Trần Thị B")
    assert captured.getvalue() == ""


def test_formatter_survives_a_bad_format_string() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "broken %s %s", ("one",), None)
    assert json.loads(JsonFormatter().format(record))["message"] == "broken %s %s"


def logged(program: str) -> subprocess.CompletedProcess[str]:
    """``program`` run by a new interpreter after ``setup_logging()``, as the daemons start (its lines 3 onwards)."""
    setup = "from gateway.logging import setup_logging\nsetup_logging()\n"
    return subprocess.run([sys.executable, "-c", setup + program], capture_output=True, text=True, timeout=60)


def test_python_warnings_are_json_lines_without_source_text() -> None:
    """A library's Python warning in a process that logs JSON lines is one such line (scrubbed), not two lines of text
    quoting the library's source."""
    done = logged(
        "import warnings\ndef library():\n    warnings.warn('part left out for 001099012345', UserWarning)\nlibrary()\n"
    )
    assert (done.returncode, done.stdout) == (0, "")
    [line] = done.stderr.splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "py.warnings" and entry["level"] == "warning"
    assert entry["message"] == "UserWarning: part left out for [redacted]"
    assert entry["warned_at"] == "<string>:5"
    assert "warnings.warn" not in line


def test_uncaught_exceptions_in_threads_and_finalisers_are_json_lines_without_their_text() -> None:
    """An exception that ends a thread, and one raised in a finaliser, are one JSON line each with the type and the
    frames: not Python's traceback text on stderr, which would quote the exception's message (personal data here)."""
    done = logged(
        "import gc, threading\n"
        "def deliver():\n"
        "    raise ValueError('applicant Nguyễn Văn A, 001099012345')\n"
        "thread = threading.Thread(target=deliver, name='delivery-1')\n"
        "thread.start(); thread.join()\n"
        "class Handle:\n"
        "    def __del__(self):\n"
        "        raise KeyError('Trần Thị B')\n"
        "handle = Handle(); del handle; gc.collect()\n"
        "print('still running')\n"
    )
    assert (done.returncode, done.stdout) == (0, "still running\n")
    thread, finaliser = (json.loads(line) for line in done.stderr.splitlines())
    assert (thread["logger"], thread["level"], thread["exc_type"]) == ("gateway.uncaught", "error", "ValueError")
    assert thread["message"] == "uncaught exception in thread delivery-1"
    assert thread["traceback"][-1] == "<string>:5 in deliver"
    assert (finaliser["logger"], finaliser["exc_type"]) == ("gateway.uncaught", "KeyError")
    assert finaliser["message"] == "Exception ignored (in Handle.__del__)"
    assert "Nguyễn" not in done.stderr and "Trần" not in done.stderr and "001099012345" not in done.stderr
