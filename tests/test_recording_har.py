"""HAR I/O, browser captures, VCR.py cassettes, redaction, rotation and the cassette CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.recording.har import Exchange, HarError, load_directory, load_har, loads_har, write_har
from gateway.recording.match import ReplayIndex
from gateway.recording.redact import Redactor
from gateway.recording.transport import RecordingSettings, _Recorder

BROWSER_HAR = {
    "log": {
        "version": "1.2",
        "creator": {"name": "Firefox", "version": "128.0"},
        "pages": [{"id": "page_1", "title": "DVC", "startedDateTime": "2026-11-22T08:00:00.000+07:00"}],
        "entries": [
            {
                "pageref": "page_1",
                "startedDateTime": "2026-11-22T08:00:01.000+07:00",
                "time": 42.5,
                "request": {
                    "method": "POST",
                    "url": "https://dichvucong.example.vn/api/login",
                    "httpVersion": "HTTP/2",
                    "headers": [
                        {"name": ":authority", "value": "dichvucong.example.vn"},
                        {"name": "Cookie", "value": "SESSION=abcdef123456"},
                    ],
                    "postData": {
                        "mimeType": "application/x-www-form-urlencoded",
                        "params": [{"name": "username", "value": "lgsp"}, {"name": "password", "value": "hunter2-pw"}],
                    },
                },
                "response": {
                    "status": 200,
                    "statusText": "OK",
                    "headers": [{"name": "Set-Cookie", "value": "SESSION=zyxw9876; HttpOnly"}],
                    "content": {
                        "mimeType": "application/json",
                        "text": "eyJzZXNzaW9uIjoidG9rLTEyMyJ9",
                        "encoding": "base64",
                    },
                },
                "timings": {"send": 1, "wait": 40, "receive": 1.5},
            },
            {
                "startedDateTime": "2026-11-22T08:00:02.000+07:00",
                "request": {"method": "GET", "url": "https://dichvucong.example.vn/logo.png"},
                "response": {"status": 200, "content": {"mimeType": "image/png", "size": 4}},
            },
        ],
    }
}

VCR_YAML = """\
interactions:
- request:
    body: '{"MaHoSo": "000.00.23.H38-261122-0001", "HoTen": "Trần Thị B", "SoDienThoai": "0987654321"}'
    headers:
      Content-Type: [application/json]
      Authorization: [Bearer vcr-secret-token]
    method: POST
    uri: https://motcua.example.vn/api/hoso
  response:
    body: {string: '{"status": "received"}'}
    headers:
      Content-Type: [application/json]
    status: {code: 201, message: Created}
- request:
    body: null
    headers: {}
    method: GET
    uri: https://motcua.example.vn/api/hoso/000.00.23.H38-261122-0001
  response:
    body: {string: !!binary "AAEC/w=="}
    headers: {}
    status: {code: 200, message: OK}
version: 1
"""


def test_a_browser_capture_loads_tolerantly(tmp_path: Path) -> None:
    exchanges = loads_har(json.dumps(BROWSER_HAR), "capture.har")
    assert [e.method for e in exchanges] == ["POST", "GET"]
    login = exchanges[0]
    assert login.request_body == b"username=lgsp&password=hunter2-pw"
    assert login.header("content-type") == "application/x-www-form-urlencoded"
    assert login.header(":authority") is None  # HTTP/2 pseudo-headers dropped
    assert login.response_body == b'{"session":"tok-123"}' and login.time_ms == 42.5
    assert exchanges[1].response_body == b"" and exchanges[1].status == 200


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"log": {}}, "capture.har: log.entries must be a list"),
        ({"nolog": 1}, "no 'log' object"),
        (
            {"log": {"entries": [{"request": {"url": "http://x"}, "response": {"status": 200}}]}},
            "capture.har: entry 0: request.method is missing",
        ),
        (
            {"log": {"entries": [{"request": {"method": "GET", "url": "http://x"}, "response": {}}]}},
            "capture.har: entry 0: response.status is missing",
        ),
    ],
)
def test_missing_required_fields_are_one_clear_line(broken: dict, message: str) -> None:
    with pytest.raises(HarError, match=message) as caught:
        loads_har(json.dumps(broken), "capture.har")
    assert "\n" not in str(caught.value)


def test_binary_bodies_round_trip_as_base64(tmp_path: Path) -> None:
    body = bytes(range(256))
    exchange = Exchange(
        method="POST",
        url="https://a.example/upload",
        request_headers=(("Content-Type", "application/pdf"),),
        request_body=body,
        status=200,
        response_headers=(("Content-Type", "application/octet-stream"),),
        response_body=body[::-1],
    )
    write_har(tmp_path / "bin.har", [exchange])
    document = json.loads((tmp_path / "bin.har").read_text())
    post = document["log"]["entries"][0]["request"]["postData"]
    assert "encoding" not in post and base64.b64decode(post["_base64"]) == body  # HAR 1.2 postData has no encoding
    assert document["log"]["entries"][0]["response"]["content"]["encoding"] == "base64"
    (loaded,) = load_har(tmp_path / "bin.har")
    assert loaded.request_body == body and loaded.response_body == body[::-1]


def test_redaction_is_stable_and_catches_free_text() -> None:
    redactor = Redactor(b"salt")
    other = Redactor(b"other salt")
    assert redactor.placeholder("0912345678") == redactor.placeholder("0912345678")
    assert redactor.placeholder("0912345678") != other.placeholder("0912345678")
    text = redactor.text("Gọi 0912345678 / 84912345678, CMND 123456789, CCCD 001099012345, mail x.y@so.gov.vn")
    for secret in ("0912345678", "84912345678", "123456789", "001099012345", "x.y@so.gov.vn"):
        assert secret not in text
    kept = "Mã hồ sơ 000.00.23.H38-261122-0001, lệ phí 150000, lúc 20261122103000"
    assert redactor.text(kept) == kept
    xml = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:x"><s:Body><t:HoSo>'
        b"<t:MaHoSo>H38-1</t:MaHoSo><t:HoTen>Nguy\xe1\xbb\x85n V\xc4\x83n A</t:HoTen><t:SoCCCD>001099012345</t:SoCCCD>"
        b"</t:HoSo></s:Body></s:Envelope>"
    )
    redacted = redactor.redact_body(xml, "text/xml")
    assert b"H38-1" in redacted and "Nguyễn".encode() not in redacted and b"001099012345" not in redacted
    assert redactor.redact_body(redacted, "text/xml") == redacted  # idempotent
    url = redactor.redact_url("https://pay.example/return?token=abc123&vnp_Amount=15000000&vnp_SecureHash=f00d")
    assert "abc123" not in url and "vnp_Amount=15000000" in url
    assert "vnp_SecureHash=f00d" in url  # a signature is no secret, and a replayed answer must still verify


def test_vcr_cassettes_import_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yaml")
    source = tmp_path / "agency.yaml"
    source.write_text(VCR_YAML, encoding="utf-8")
    into = tmp_path / "cassettes"
    assert main(["cassette", "import-vcr", str(source), "--into", str(into)]) == 0
    data = (into / "agency.har").read_bytes()
    for secret in (b"vcr-secret-token", "Trần Thị B".encode(), b"0987654321"):
        assert secret not in data
    exchanges = load_directory(into)
    assert [e.status for e in exchanges] == [201, 200]
    assert exchanges[1].response_body == b"\x00\x01\x02\xff"
    index = ReplayIndex.build(exchanges)
    redactor = RecordingSettings().redactor(into)
    live = '{"MaHoSo": "000.00.23.H38-261122-0001", "HoTen": "Trần Thị B", "SoDienThoai": "0987654321"}'.encode()
    hit = index.lookup(
        "POST",
        "https://motcua.example.vn/api/hoso",
        (("Content-Type", "application/json"),),
        redactor.redact_body(live, "application/json"),
    )
    assert hit.status == 201


def test_a_yaml_python_object_tag_is_refused_safely(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("yaml")
    marker = tmp_path / "pwned"
    source = tmp_path / "evil.yaml"
    source.write_text(
        f"interactions: !!python/object/apply:os.system ['touch {marker}']\nversion: 1\n", encoding="utf-8"
    )
    assert main(["cassette", "import-vcr", str(source), "--into", str(tmp_path / "c")]) == 2
    assert not marker.exists()
    error = capsys.readouterr().err
    assert "not a safe YAML cassette" in error and error.count("\n") == 1


def test_cassette_cli_import_show_export_redact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "capture.har"
    capture.write_text(json.dumps(BROWSER_HAR), encoding="utf-8")
    into = tmp_path / "cassettes"
    assert main(["cassette", "import-har", str(capture), "--into", str(into)]) == 0
    stored = (into / "capture.har").read_bytes()
    for secret in (b"hunter2-pw", b"abcdef123456", b"zyxw9876", b"tok-123"):
        assert secret not in stored
    capsys.readouterr()
    assert main(["cassette", "show", str(into), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["method"], r["status"]) for r in rows] == [("POST", 200), ("GET", 200)]
    assert main(["cassette", "show", str(into)]) == 0
    assert "dichvucong.example.vn/logo.png" in capsys.readouterr().out
    out = tmp_path / "all.har"
    assert main(["cassette", "export-har", str(into), "--out", str(out)]) == 0
    assert len(load_har(out)) == 2
    # A cassette written before a key was redacted is fixed in place by `cassette redact`.
    write_har(
        into / "old.har",
        [
            Exchange(
                method="GET",
                url="https://a.example/?phone=0912345678",
                status=200,
                response_headers=(("Content-Type", "application/json"),),
                response_body=b'{"email": "c@d.vn"}',
            )
        ],
    )
    assert main(["cassette", "redact", str(into)]) == 0
    data = (into / "old.har").read_bytes()
    assert b"0912345678" not in data and b"c@d.vn" not in data
    assert main(["cassette", "show", str(tmp_path / "missing")]) == 2
    assert main(["replay", "serve", str(tmp_path / "missing")]) == 2


def test_recordings_rotate_by_size(tmp_path: Path) -> None:
    settings = RecordingSettings(mode="record", max_file_bytes=2048)
    recorder = _Recorder(tmp_path, "agency:X", "run1", settings.redactor(tmp_path), settings.max_file_bytes)
    for n in range(10):
        recorder.record(Exchange(method="GET", url=f"https://a.example/{n}", status=200, response_body=b"x" * 500))
    files = sorted(tmp_path.glob("*.har"))
    assert len(files) > 1 and all(f.stat().st_size <= 2048 for f in files[:-1])
    assert [e.url for e in load_directory(tmp_path)] == [f"https://a.example/{n}" for n in range(10)]
