"""HAR's standard fields through import, cassette and export (pages, pageref, serverIPAddress, connection, comment,
cookies arrays, timings, the response's httpVersion), redacted as the rest of the cassette is; ``cassette redact``
keeping a cassette's comment and pages; the in-process replay transport refusing a recorded 101."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from gateway.recording.har import load_directory
from gateway.recording.match import NoMatch
from gateway.recording.redact import Redactor, directory_salt
from gateway.recording.transport import Unsupported, replay_wrapper
from tests.test_recording_bodies import entry, har, import_har
from tests.test_recording_fidelity import websocket_capture

SESSION = "A544AC9566974D92A17F703769CEC2E6"
CSRF = "OTc1MzcwMzMxNjQ4MjE0"


def _page(page_id: str, title: str) -> dict[str, Any]:
    return {
        "startedDateTime": "2026-11-22T08:00:00.000+07:00",
        "id": page_id,
        "title": title,
        "pageTimings": {"onContentLoad": 120.5, "onLoad": 300},
    }


def _browser_entry() -> dict[str, Any]:
    item = entry(
        "https://portal.example/account",
        headers=[("Set-Cookie", f"csrf={CSRF}; Path=/"), ("Content-Type", "text/plain")],
        content={"size": 2, "mimeType": "text/plain", "text": "ok"},
    )
    item["request"]["httpVersion"] = "HTTP/1.1"
    item["request"]["headers"] = [{"name": "Cookie", "value": f"SESSION_ID={SESSION}; lang=vi"}]
    item["request"]["cookies"] = [
        {"name": "SESSION_ID", "value": SESSION, "httpOnly": True, "secure": True},
        {"name": "lang", "value": "vi", "expires": None},
    ]
    item["response"]["httpVersion"] = "h2"
    item["response"]["cookies"] = [{"name": "csrf", "value": CSRF, "path": "/", "expires": "2027-01-01T00:00:00Z"}]
    item["pageref"] = "page_1"
    item["serverIPAddress"] = "[2606:4700::6810:85e5]"  # as Chrome writes IPv6
    item["connection"] = "443"
    item["comment"] = "asked by nguyen.van.a@example.com"
    item["timings"] = {"blocked": 1.5, "dns": -1, "connect": 3, "ssl": 2, "send": 0.25, "wait": 7, "receive": 0.5}
    return item


def _export(into: Path, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "export.har"
    assert main(["cassette", "export-har", str(into), "--out", str(out)]) == 0
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return document


def test_standard_har_fields_survive_import_and_export_redacted(tmp_path: Path) -> None:
    document = har(_browser_entry())
    document["log"]["pages"] = [_page("page_1", "Account of 0912345678")]
    into = import_har(tmp_path, document)
    redactor = Redactor(directory_salt(into))
    log = _export(into, tmp_path)["log"]
    (page,) = log["pages"]
    assert page["id"] == "page_1" and page["pageTimings"] == {"onContentLoad": 120.5, "onLoad": 300}
    assert page["title"] == f"Account of {redactor.placeholder('0912345678')}"  # a title is free text
    (exported,) = log["entries"]
    assert exported["pageref"] == "page_1"
    assert exported["serverIPAddress"] == "2606:4700::6810:85e5"
    assert exported["connection"] == "443"
    assert exported["comment"] == f"asked by {redactor.placeholder('nguyen.van.a@example.com')}"
    assert exported["timings"] == {
        "blocked": 1.5,
        "dns": -1,
        "connect": 3,
        "send": 0.25,
        "wait": 7,
        "receive": 0.5,
        "ssl": 2,
    }
    assert exported["request"]["httpVersion"] == "HTTP/1.1" and exported["response"]["httpVersion"] == "h2"
    # Cookie values in the arrays are redacted as the Cookie / Set-Cookie headers are: every value, short ones too.
    assert exported["request"]["cookies"] == [
        {"name": "SESSION_ID", "value": redactor.placeholder(SESSION), "httpOnly": True, "secure": True},
        {"name": "lang", "value": redactor.placeholder("vi"), "expires": None},
    ]
    assert exported["response"]["cookies"] == [
        {"name": "csrf", "value": redactor.placeholder(CSRF), "path": "/", "expires": "2027-01-01T00:00:00Z"}
    ]
    text = json.dumps(log)
    assert SESSION not in text and CSRF not in text and "nguyen.van.a" not in text and "0912345678" not in text
    # A second trip changes nothing (redaction is idempotent, the fields are read back as written).
    (tmp_path / "again").mkdir()
    again = import_har(tmp_path / "again", _export(into, tmp_path), name="export.har")
    assert (
        _export(again, tmp_path / "again")["log"]["entries"][0]["request"]["cookies"] == exported["request"]["cookies"]
    )


def test_a_cookie_array_value_is_redacted_wherever_else_it_appears(tmp_path: Path) -> None:
    item = entry(
        "https://portal.example/",
        headers=[("Content-Type", "text/plain")],
        content={"size": 40, "mimeType": "text/plain", "text": f"your session is {SESSION}"},
    )
    item["request"]["cookies"] = [{"name": "SESSION_ID", "value": SESSION}]  # only in the array, no Cookie header
    into = import_har(tmp_path, har(item))
    (stored,) = load_directory(into)
    placeholder = Redactor(directory_salt(into)).placeholder(SESSION)
    assert stored.response_body == f"your session is {placeholder}".encode()
    assert stored.request_cookies == ({"name": "SESSION_ID", "value": placeholder},)


def test_fields_of_the_wrong_type_are_dropped_and_the_export_stays_har(tmp_path: Path) -> None:
    item = entry("https://a.example/")
    item.update(pageref=3, serverIPAddress="fe80::1%7", connection=None, comment=["x"])
    item["timings"] = {"send": "fast", "wait": 1, "receive": 0}
    item["request"]["cookies"] = [{"value": "no name"}, {"name": "a", "value": None, "httpOnly": "yes"}]
    document = har(item)
    document["log"]["pages"] = [{"id": "p"}, {"title": "no id"}]
    into = import_har(tmp_path, document)
    log = _export(into, tmp_path)["log"]
    (page,) = log["pages"]
    assert page["id"] == "p" and page["title"] == "" and page["pageTimings"] == {} and page["startedDateTime"]
    (exported,) = log["entries"]
    assert not {"pageref", "serverIPAddress", "connection", "comment"} & exported.keys()
    assert exported["_serverIPAddress"] == "fe80::1%7"  # not HAR's format (a zone): kept, outside HAR's field
    assert exported["timings"]["wait"] == 12 and exported["timings"]["send"] == 0  # written from ``time``
    assert exported["request"]["cookies"] == [{"name": "a", "value": ""}]


def test_export_renames_a_page_id_two_cassettes_use_for_different_pages(tmp_path: Path) -> None:
    for name, title in (("first.har", "First"), ("second.har", "Second")):
        item = entry(f"https://a.example/{name}")
        item["pageref"] = "page_1"
        document = har(item)
        document["log"]["pages"] = [_page("page_1", title)]
        into = import_har(tmp_path, document, name=name)
    log = _export(into, tmp_path)["log"]
    assert [(page["id"], page["title"]) for page in log["pages"]] == [("page_1", "First"), ("page_1-2", "Second")]
    assert [item["pageref"] for item in log["entries"]] == ["page_1", "page_1-2"]


def test_cassette_redact_keeps_the_comment_and_the_pages(tmp_path: Path) -> None:
    document = har(_browser_entry())
    document["log"]["pages"] = [_page("page_1", "Account")]
    into = import_har(tmp_path, document)
    (cassette,) = into.glob("*.har")
    before = json.loads(cassette.read_text(encoding="utf-8"))["log"]
    assert before["comment"] == "imported from capture.har"
    assert main(["cassette", "redact", str(into)]) == 0
    after = json.loads(cassette.read_text(encoding="utf-8"))["log"]
    assert after["comment"] == "imported from capture.har"
    assert after["pages"] == before["pages"]
    assert after["entries"][0]["request"]["cookies"] == before["entries"][0]["request"]["cookies"]


def test_the_in_process_transport_refuses_a_recorded_websocket_handshake(tmp_path: Path) -> None:
    into = websocket_capture(tmp_path)
    wrapper = replay_wrapper(into)

    async def ask(url: str) -> httpx.Response:
        transport = wrapper(httpx.AsyncHTTPTransport(), "socket")
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(url)

    with pytest.raises(Unsupported) as refused:
        asyncio.run(ask("https://socket.example/v3/channel_123"))
    assert isinstance(refused.value, NoMatch)  # reported as a miss is: a permanent failure
    message = str(refused.value)
    assert "101 Switching Protocols" in message and "WebSocket" in message and "\n" not in message
    assert asyncio.run(ask("https://socket.example/health")).text == "ok"  # the other entries still replay
