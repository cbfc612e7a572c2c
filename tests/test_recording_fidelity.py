"""Real-world HAR and VCR.py inputs, continued: WebSockets, old VCR.py formats, cookie values, URLs and forms kept
as recorded, multipart and binary request bodies on export, null values and HAR's standard fields."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from gateway.recording.har import Exchange, load_directory, load_har, write_har
from gateway.recording.redact import Redactor
from gateway.recording.server import create_replay_app
from gateway.recording.transport import Replayer, _Recorder
from tests.servers import ServerThread
from tests.test_recording_bodies import _one_line_error, entry, har, import_har, replayed

# -- D14. WebSocket handshakes and vcrpy's older httpx format


def _websocket_entry() -> dict[str, Any]:
    """A WebSocket handshake as Chrome records it (mitmproxy's websocket.har): 101 and the frames in a custom field."""
    item = entry(
        "https://socket.example/v3/channel_123",
        status=101,
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ],
    )
    item["response"]["statusText"] = "Switching Protocols"
    item["_resourceType"] = "websocket"
    item["_webSocketMessages"] = [{"type": "send", "time": 1.5, "opcode": 1, "data": "hello"}]
    return item


def websocket_capture(tmp_path: Path) -> Path:
    """A capture of a WebSocket handshake beside a plain answer, imported into a cassette directory."""
    health = entry("https://socket.example/health", content={"size": 2, "mimeType": "text/plain", "text": "ok"})
    return import_har(tmp_path, har(_websocket_entry(), health))


def test_a_websocket_handshake_is_kept_and_refused_by_replay_without_hanging(tmp_path: Path) -> None:
    into = websocket_capture(tmp_path)
    (stored,) = [e for e in load_directory(into) if e.status == 101]
    assert stored.extra["_webSocketMessages"][0]["data"] == "hello"  # the import keeps the entry and its frames
    with ServerThread(create_replay_app(into)) as server, httpx.Client(trust_env=False, timeout=10) as client:
        answer = client.get(server.base_url + "/v3/channel_123")
        assert answer.status_code == 501 and answer.headers["X-Replay"] == "unsupported"
        detail = answer.json()["detail"]
        assert "101 Switching Protocols" in detail and "WebSocket" in detail and "\n" not in detail
        # A live WebSocket handshake is refused the same way, as an HTTP answer.
        handshake = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        live = client.get(server.base_url + "/v3/channel_123", headers=handshake)
        assert live.status_code == 501 and live.headers["X-Replay"] == "unsupported"
        # The server still answers the rest.
        assert client.get(server.base_url + "/health").text == "ok"


OLD_HTTPX_VCR = """\
interactions:
- request:
    body: ''
    headers:
      host: [httpbin.org]
    method: GET
    uri: https://httpbin.org/gzip
  response:
    content: '{"gzipped": true, "origin": "146.200.25.115"}'
    headers:
      Content-Encoding: [gzip]
      Content-Length: ['230']
      Content-Type: [application/json]
    http_version: HTTP/1.1
    status_code: 200
version: 1
"""


def test_vcrpys_older_httpx_format_is_read(tmp_path: Path) -> None:
    """vcrpy's own gzip_httpx_old_format.yaml: "status_code" and "content", the body already decoded by httpx."""
    source = tmp_path / "old.yaml"
    source.write_text(OLD_HTTPX_VCR, encoding="utf-8")
    assert main(["cassette", "import-vcr", str(source), "--into", str(tmp_path / "c")]) == 0
    (exchange,) = load_directory(tmp_path / "c")
    assert exchange.status == 200 and json.loads(exchange.response_body)["gzipped"] is True
    assert exchange.header("content-encoding", response=True) is None
    assert exchange.header("content-length", response=True) == str(len(exchange.response_body))
    (answer,) = replayed(tmp_path / "c", ("GET", "/gzip"))
    assert answer.status_code == 200 and answer.json()["gzipped"] is True


def test_an_unknown_vcr_interaction_says_what_was_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "other.yaml"
    source.write_text(
        "interactions:\n- request: {verb: GET, url: 'http://a'}\n  response: {code: 200}\n", encoding="utf-8"
    )
    assert main(["cassette", "import-vcr", str(source), "--into", str(tmp_path / "c")]) == 2
    _one_line_error(
        capsys,
        "other.yaml: interaction 0",
        "found request keys url, verb",
        "response keys code",
        "expected request.method",
    )
    string_code = tmp_path / "string.yaml"
    string_code.write_text(
        OLD_HTTPX_VCR.replace("    status_code: 200\n", "    status: {code: '204', message: No Content}\n"),
        encoding="utf-8",
    )
    assert main(["cassette", "import-vcr", str(string_code), "--into", str(tmp_path / "d")]) == 0
    assert [e.status for e in load_directory(tmp_path / "d")] == [204]


# -- D4. Cookie values are redacted wherever else they appear

SESSION = "A544AC9566974D92A17F703769CEC2E6"
CSRF = "OTc1MzcwMzMx"


def test_cookie_values_are_redacted_wherever_else_they_appear(tmp_path: Path) -> None:
    login = entry(
        f"https://designer.example/ServerService/GetNavigationMenu2?sid={SESSION}",
        method="POST",
        headers=[
            ("Content-Type", "text/html"),
            ("Set-Cookie", f"csrf={CSRF}; expires=Tue, 09-Nov-2021 03:28:11 GMT; path=/; httponly"),
        ],
        content={
            "size": 0,
            "mimeType": "text/html",
            "text": f'<html><form><input type="hidden" name="csrf" value="{CSRF}"></form></html>',
        },
    )
    login["request"]["headers"] = [
        {"name": "Cookie", "value": f"SESSION_ID={SESSION}; lang=vi"},
        {"name": "CSRFDesignerToken", "value": SESSION},
    ]
    # Another exchange of the same cassette echoes the csrf value that the first one set.
    echo = entry(
        "https://designer.example/state",
        headers=[("Content-Type", "application/json")],
        content={"size": 0, "mimeType": "application/json", "text": json.dumps({"csrf": CSRF, "lang": "vi"})},
    )
    into = import_har(tmp_path, har(login, echo))
    text = (into / "capture.har").read_text(encoding="utf-8")
    assert SESSION not in text and CSRF not in text
    first, second = load_directory(into)
    placeholder = first.header("CSRFDesignerToken")
    assert placeholder is not None and placeholder.startswith("<redacted:")
    assert placeholder in first.url  # the same placeholder for the same value, in the header and the URL
    assert b'value="<redacted:' in first.response_body and json.loads(second.response_body)["lang"] == "vi"
    # The request is redacted with its own values: the live request still matches its recording.
    (answer,) = [
        Replayer(into).find(
            "POST",
            f"https://designer.example/ServerService/GetNavigationMenu2?sid={SESSION}",
            [("Cookie", f"SESSION_ID={SESSION}; lang=vi"), ("CSRFDesignerToken", SESSION)],
            None,
        )
    ]
    assert answer.status == 200
    # Applying redaction again changes nothing.
    assert main(["cassette", "redact", str(into)]) == 0
    assert load_directory(into) == [first, second]


def test_short_cookie_values_and_unredacted_cookie_headers_are_left_alone(tmp_path: Path) -> None:
    redactor = Redactor(b"salt")
    exchange = Exchange(
        method="GET",
        url="https://a.example/?lang=vi-VN&theme=darkmode",
        request_headers=(("Cookie", "lang=vi-VN; theme=darkmode"),),
        status=200,
        response_headers=(("Content-Type", "text/plain"),),
        response_body=b"vi-VN",
    )
    redacted = redactor.exchange(exchange)
    assert redacted.url == exchange.url.replace("darkmode", redactor.placeholder("darkmode"))
    assert redacted.response_body == b"vi-VN"  # 5 characters: not a secret
    # With Cookie taken off the redacted headers, its values are not redacted elsewhere either.
    assert Redactor(b"salt", headers=["authorization"]).exchange(exchange).url == exchange.url


def test_a_live_recording_redacts_a_cookie_value_in_later_answers(tmp_path: Path) -> None:
    recorder = _Recorder(tmp_path, "portal", "run", Redactor(b"salt"), 10**6)
    recorder.record(
        Exchange(
            method="POST",
            url="https://portal.example/login",
            status=204,
            response_headers=(("Set-Cookie", f"sid={SESSION}; Path=/"),),
        )
    )
    recorder.record(
        Exchange(
            method="GET",
            url="https://portal.example/me",
            status=200,
            response_headers=(("Content-Type", "text/plain"),),
            response_body=f"session {SESSION}".encode(),
        )
    )
    assert SESSION not in recorder.path.read_text(encoding="utf-8")


# -- D11. URLs and form bodies kept as recorded but for what is redacted; UUIDs are no ID numbers

UUID = "123e4567-e89b-12d3-a456-426655440000"


def test_urls_keep_their_recorded_encoding_but_for_redacted_values(tmp_path: Path) -> None:
    urls = [
        "https://s3.example/snapshots?delimiter=/&prefix=&at=2022-08-07T16%3A56%3A54.227Z&notify_self&q=a+b",
        "https://ipv6.example/files/report%28v2%29%2C%26.pdf?sort=name,asc",
        f"https://api.example/uuid/{UUID}?userId={UUID}",
        "https://pay.example/return?vnp_Amount=15000000&token=abc123secret&at=10%3A00",
        "https://api.example/citizen/001099012345?next=/home",
    ]
    into = import_har(tmp_path, har(*(entry(url) for url in urls)))
    stored = [exchange.url for exchange in load_directory(into)]
    assert stored[:3] == urls[:3]  # nothing redacted: byte for byte as recorded
    assert stored[3].startswith("https://pay.example/return?vnp_Amount=15000000&token=<redacted:")
    assert stored[3].endswith("&at=10%3A00") and "abc123secret" not in stored[3]
    assert stored[4].startswith("https://api.example/citizen/<redacted:") and stored[4].endswith("?next=/home")
    # A live request still finds each recording.
    replayer = Replayer(into)
    for url in urls:
        assert replayer.find("GET", url, (), None).status == 200


def test_form_bodies_keep_their_text_and_only_redacted_values_change(tmp_path: Path) -> None:
    jspb = '[[1,null,null,[null,"en-IN"]],1655,[["1645689903089",null,"0912345678"]]]'
    bodies = [jspb, "a=%5B1%5D&password=hunter22&b=x+y&flag"]
    entries = []
    for number, text in enumerate(bodies):
        item = entry(f"https://play.example/log?n={number}", method="POST")
        item["request"]["postData"] = {"mimeType": "application/x-www-form-urlencoded;charset=UTF-8", "text": text}
        entries.append(item)
    into = import_har(tmp_path, har(*entries))
    first, second = (exchange.request_body.decode() for exchange in load_directory(into))  # type: ignore[union-attr]
    # Not name=value pairs: redacted as text (the phone number), every other character as sent.
    assert first.startswith('[[1,null,null,[null,"en-IN"]],1655,[["1645689903089",null,"<redacted:') and first.endswith(
        '"]]]'
    )
    assert "0912345678" not in first
    assert second.startswith("a=%5B1%5D&password=<redacted:") and second.endswith("&b=x+y&flag")
    assert "hunter22" not in second
    replayer = Replayer(into)
    for number, text in enumerate(bodies):
        headers = [("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")]
        assert replayer.find("POST", f"https://play.example/log?n={number}", headers, text.encode()).status == 200


def test_a_uuid_is_not_an_id_number_but_digits_standing_alone_are() -> None:
    redactor = Redactor(b"salt")
    text = f"uuid {UUID}, {UUID.upper()}, cccd 001099012345, phone 0912345678, code 12345678-aaaa-001099012345"
    redacted = redactor.text(text)
    assert UUID in redacted and UUID.upper() in redacted
    assert "001099012345," not in redacted and "0912345678" not in redacted
    assert redacted.endswith("12345678-aaaa-" + redactor.placeholder("001099012345"))  # not a UUID: still redacted
    phone_tail = "123e4567-e89b-12d3-a456-091234567890"
    assert redactor.text(phone_tail) == phone_tail


# -- D12. Request bodies on export: text when they are text (multipart too), readable and exact when binary

BOUNDARY = "----WebKitFormBoundary7MA4YWxkTrZu0gW"


def _multipart(file_bytes: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nHồ sơ số 12\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + file_bytes
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_request_bodies_are_exported_as_har_readers_expect_and_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text_body, binary_body = _multipart(b"plain text file"), _multipart(b"\x89PNG\r\n\x1a\n\xff\x00\xfe")
    directory = tmp_path / "c"
    write_har(
        directory / "up.har",
        [
            Exchange(
                method="POST",
                url=f"https://upload.example/{name}",
                request_headers=(("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),),
                request_body=body,
                status=201,
            )
            for name, body in (("text", text_body), ("binary", binary_body))
        ],
    )
    assert main(["cassette", "export-har", str(directory), "--out", str(tmp_path / "out.har")]) == 0
    document = json.loads((tmp_path / "out.har").read_text(encoding="utf-8"))
    text_post, binary_post = (item["request"]["postData"] for item in document["log"]["entries"])
    assert text_post["text"] == text_body.decode() and set(text_post) == {"mimeType", "params", "text"}
    assert "encoding" not in binary_post  # not in HAR 1.2's postData
    assert 'name="note"\r\n\r\nHồ sơ số 12' in binary_post["text"] and "\ufffd" in binary_post["text"]
    assert base64.b64decode(binary_post["_base64"]) == binary_body
    # Lossless: the exported file read again gives the same bytes.
    assert [e.request_body for e in load_har(tmp_path / "out.har")] == [text_body, binary_body]
    # An older cassette's postData with "encoding": "base64" is still read.
    old = {"mimeType": "application/octet-stream", "text": base64.b64encode(b"\xff\x00").decode(), "encoding": "base64"}
    document["log"]["entries"][0]["request"]["postData"] = old
    (tmp_path / "old.har").write_text(json.dumps(document), encoding="utf-8")
    assert load_har(tmp_path / "old.har")[0].request_body == b"\xff\x00"


# -- D13. null values


def test_null_header_and_form_values_are_empty_never_none(tmp_path: Path) -> None:
    item = entry(
        "https://a.example/form",
        method="POST",
        headers=[("Content-Type", "text/plain")],
        content={"size": 2, "mimeType": "text/plain", "text": "ok"},
    )
    item["request"]["headers"] = [{"name": "X-Trace", "value": None}, {"name": "Accept", "value": "*/*"}]
    item["response"]["headers"].append({"name": "X-Empty", "value": None})
    item["request"]["postData"] = {
        "mimeType": "application/x-www-form-urlencoded",
        "params": [{"name": "a", "value": None}, {"name": "b", "value": "1"}, {"name": "c"}],
    }
    into = import_har(tmp_path, har(item))
    (exchange,) = load_directory(into)
    assert exchange.header("X-Trace") == "" and exchange.header("X-Empty", response=True) == ""
    assert exchange.request_body == b"a=&b=1&c="
    assert "None" not in (into / "capture.har").read_text(encoding="utf-8")
    source = tmp_path / "nulls.yaml"
    source.write_text(
        OLD_HTTPX_VCR.replace("      host: [httpbin.org]\n", "      host: [httpbin.org]\n      x-trace: [null]\n"),
        encoding="utf-8",
    )
    assert main(["cassette", "import-vcr", str(source), "--into", str(tmp_path / "v")]) == 0
    assert load_directory(tmp_path / "v")[0].header("x-trace") == ""
