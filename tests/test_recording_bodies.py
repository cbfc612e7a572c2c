"""Real-world HAR and VCR.py inputs: content codings, charsets, headers, bodiless answers, names, paths and errors."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cli import main
from gateway.recording.har import Exchange, load_directory, load_har, write_har
from gateway.recording.server import create_replay_app
from gateway.recording.settings import RecordingSettings
from gateway.recording.transport import RecordingTransport, Replayer, _Recorder, response_of
from tests.servers import ServerThread

PAGE = "<html><head><title>Café Hà Nội</title></head><body>hello</body></html>"


def entry(
    url: str,
    *,
    method: str = "GET",
    status: int = 200,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "startedDateTime": "2026-11-22T08:00:01.000+07:00",
        "time": 12,
        "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": []},
        "response": {
            "status": status,
            "statusText": "",
            "headers": [{"name": name, "value": value} for name, value in headers],
            "content": content or {"size": 0, "mimeType": "x-unknown"},
        },
    }


def har(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"}, "entries": [*entries]}}


def import_har(tmp_path: Path, document: dict[str, Any], name: str = "capture.har") -> Path:
    source = tmp_path / name
    source.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    into = tmp_path / "cassettes"
    assert main(["cassette", "import-har", str(source), "--into", str(into)]) == 0
    return into


def replayed(directory: Path, *requests: tuple[str, str]) -> list[httpx.Response]:
    """The answers of ``replay serve`` (the ASGI app under uvicorn on 127.0.0.1) to ``(method, path)`` requests."""
    with ServerThread(create_replay_app(directory)) as server, httpx.Client(trust_env=False) as client:
        return [client.request(method, server.base_url + path) for method, path in requests]


def in_process(directory: Path, method: str, url: str) -> httpx.Response:
    replayer = Replayer(directory)
    exchange = replayer.find(method, url, (), None)
    response = response_of(exchange, httpx.Request(method, url))
    response.read()
    return response


# -- 1. Content-Encoding of a decoded HAR body


def test_a_browser_body_stored_decoded_replays_without_its_content_encoding(tmp_path: Path) -> None:
    into = import_har(
        tmp_path,
        har(
            entry(
                "https://site.example/",
                headers=[
                    ("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Encoding", "gzip"),
                    ("Content-Length", "61"),
                ],
                content={"size": len(PAGE.encode()), "mimeType": "text/html; charset=utf-8", "text": PAGE},
            ),
            entry(
                "https://site.example/app.js",
                headers=[("Content-Type", "application/javascript"), ("Content-Encoding", "br")],
                content={"size": 11, "mimeType": "application/javascript", "text": "let a = 1;\n"},
            ),
        ),
    )
    stored = json.loads((into / "capture.har").read_text(encoding="utf-8"))
    for stored_entry in stored["log"]["entries"]:
        names = {h["name"].lower() for h in stored_entry["response"]["headers"]}
        assert "content-encoding" not in names  # the stored body is the decoded one
    page, script = replayed(into, ("GET", "/"), ("GET", "/app.js"))
    assert page.status_code == 200 and page.headers["X-Replay"] == "hit"
    assert page.text == PAGE and "content-encoding" not in page.headers
    assert page.headers["content-length"] == str(len(PAGE.encode()))
    assert script.status_code == 200 and script.text == "let a = 1;\n"
    # The in-process transport gets the same, readable answer.
    assert in_process(into, "GET", "https://site.example/").text == PAGE


def test_a_body_still_encoded_is_decoded_and_replayed(tmp_path: Path) -> None:
    """A cassette of an older gateway (or a tool keeping wire bytes) holds gzip/deflate bytes: still replayable."""
    body = json.dumps({"status": "received", "note": "ổn"}).encode()
    write_har(
        tmp_path / "old.har",
        [
            Exchange(
                method="GET",
                url=f"https://a.example/{coding}",
                status=200,
                response_headers=(("Content-Type", "application/json"), ("Content-Encoding", coding)),
                response_body=gzip.compress(body) if coding == "gzip" else zlib.compress(body),
            )
            for coding in ("gzip", "deflate")
        ],
    )
    for loaded in load_har(tmp_path / "old.har"):
        assert loaded.response_body == body and loaded.header("content-encoding", response=True) is None
    gzipped, deflated = replayed(tmp_path, ("GET", "/gzip"), ("GET", "/deflate"))
    assert gzipped.content == body and deflated.content == body


VCR_GZIP = """\
interactions:
- request:
    body: null
    headers:
      Accept-Encoding: [gzip, deflate]
    method: GET
    uri: https://api.example.vn/profile
  response:
    body: {{string: !!binary "{body}"}}
    headers:
      Content-Encoding: [gzip]
      Content-Length: ['{length}']
      Content-Type: [application/json]
    status: {{code: 200, message: OK}}
version: 1
"""
PII = {"email": "nguyen.van.a@example.com", "phone": "0912345678", "access_token": "eyJhbGciOi.secret-part"}


def test_vcr_gzip_bodies_are_redacted_decoded_and_replayed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compressed = gzip.compress(json.dumps(PII).encode())
    source = tmp_path / "profile.yaml"
    source.write_text(
        VCR_GZIP.format(body=base64.b64encode(compressed).decode(), length=len(compressed)), encoding="utf-8"
    )
    into = tmp_path / "cassettes"
    assert main(["cassette", "import-vcr", str(source), "--into", str(into)]) == 0
    (exchange,) = load_directory(into)
    document = json.loads(exchange.response_body)
    assert exchange.header("content-encoding", response=True) is None
    assert exchange.header("content-length", response=True) == str(len(exchange.response_body))
    stored = (into / "profile.har").read_text(encoding="utf-8")
    for secret in PII.values():
        assert secret not in stored and secret not in exchange.response_body.decode()
    assert set(document) == set(PII) and all(value.startswith("<redacted:") for value in document.values())
    (answer,) = replayed(into, ("GET", "/profile"))
    assert answer.status_code == 200 and answer.json() == document


async def test_a_live_recording_keeps_the_decoded_redacted_body(tmp_path: Path) -> None:
    compressed = gzip.compress(json.dumps(PII).encode())

    def upstream(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(compressed))

    settings = RecordingSettings(mode="record")
    recorder = _Recorder(tmp_path, "agency:X", "run1", settings.redactor(tmp_path), settings.max_file_bytes)
    transport = RecordingTransport(httpx.MockTransport(upstream), recorder)
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.get("https://api.example.vn/profile")
    assert answer.json() == PII  # the caller gets the real answer
    stored = recorder.path.read_text(encoding="utf-8")
    for secret in PII.values():
        assert secret not in stored
    (exchange,) = load_directory(tmp_path)
    assert json.loads(exchange.response_body)["email"].startswith("<redacted:")


# -- 2. Two imports with one file stem


def test_a_second_import_with_the_same_stem_takes_a_free_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = har(entry("https://a.example/first", status=201))
    second = har(entry("https://a.example/second", status=202), entry("https://a.example/third", status=203))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    into = import_har(tmp_path / "a", first)
    capsys.readouterr()
    source = tmp_path / "b" / "capture.har"
    source.write_text(json.dumps(second), encoding="utf-8")
    assert main(["cassette", "import-har", str(source), "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert "capture-2.har" in out and "capture.har already exists" in out
    assert [e.status for e in load_har(into / "capture.har")] == [201]
    assert [e.status for e in load_har(into / "capture-2.har")] == [202, 203]
    yaml_source = tmp_path / "capture.yaml"
    yaml_source.write_text(
        "interactions:\n- request: {method: GET, uri: 'https://a.example/vcr', body: null, headers: {}}\n"
        "  response: {status: {code: 204, message: No Content}, headers: {}, body: {string: ''}}\nversion: 1\n",
        encoding="utf-8",
    )
    assert main(["cassette", "import-vcr", str(yaml_source), "--into", str(into)]) == 0
    assert sorted(p.name for p in into.glob("*.har")) == ["capture-2.har", "capture-3.har", "capture.har"]
    assert len(load_directory(into)) == 4


# -- 4, 5. Header values outside Latin-1, repeated headers


def test_headers_outside_latin1_and_repeated_headers_replay_as_recorded(tmp_path: Path) -> None:
    disposition = 'attachment; filename="báo cáo tháng 3.pdf"'
    into = import_har(
        tmp_path,
        har(
            entry(
                "https://files.example/report",
                headers=[
                    ("Content-Type", "application/pdf"),
                    ("Content-Disposition", disposition),
                    ("Set-Cookie", "a=1; Path=/"),
                    ("Set-Cookie", "b=2; Path=/"),
                    ("Link", "</a>; rel=preload"),
                    ("Link", "</b>; rel=preload"),
                ],
                content={"size": 4, "mimeType": "application/pdf", "text": "JVBERg==", "encoding": "base64"},
            )
        ),
    )
    (answer,) = replayed(into, ("GET", "/report"))
    assert answer.status_code == 200 and answer.content == b"%PDF"
    raw = dict(answer.headers.raw)
    assert raw[b"content-disposition"] == disposition.encode("utf-8")
    assert len(answer.headers.get_list("set-cookie")) == 2  # two headers, not one comma-joined
    assert answer.headers.get_list("link") == ["</a>; rel=preload", "</b>; rel=preload"]
    local = in_process(into, "GET", "https://files.example/report")
    assert local.headers["content-disposition"] == disposition


# -- 6. Errors are one line, exit code 2

VCR_PLAIN = """\
interactions:
- request: {method: GET, uri: 'https://a.example/x', body: null, headers: {}}
  response:
    status: {code: 200, message: OK}
    headers: {Content-Type: [text/plain]}
    body: {string: 'Tiếng Việt, café'}
version: 1
"""


def test_a_utf16_vcr_cassette_loads(tmp_path: Path) -> None:
    source = tmp_path / "utf16.yaml"
    source.write_bytes(VCR_PLAIN.encode("utf-16"))  # with a byte order mark, as YAML allows
    assert main(["cassette", "import-vcr", str(source), "--into", str(tmp_path / "c")]) == 0
    (exchange,) = load_directory(tmp_path / "c")
    assert exchange.response_body.decode() == "Tiếng Việt, café"


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_unreadable_vcr_cassettes_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(VCR_PLAIN.replace("Tiếng Việt, ", "").encode("latin-1"))
    assert main(["cassette", "import-vcr", str(latin1), "--into", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "latin1.yaml", "UTF-8")
    bad = tmp_path / "bad64.yaml"
    bad.write_text(VCR_PLAIN.replace("{string: 'Tiếng Việt, café'}", "{base64_string: 'H4sIAKwr!!'}"), encoding="utf-8")
    assert main(["cassette", "import-vcr", str(bad), "--into", str(tmp_path / "c")]) == 2
    _one_line_error(capsys, "bad64.yaml", "interaction 0", "base64")
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").glob("*.har"))


def test_bad_output_paths_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    into = import_har(tmp_path, har(entry("https://a.example/")))
    capsys.readouterr()
    assert main(["cassette", "export-har", str(into), "--out", str(tmp_path / "missing" / "x.har")]) == 2
    _one_line_error(capsys, "no such directory")
    assert main(["cassette", "export-har", str(into), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a directory")
    a_file = tmp_path / "afile"
    a_file.write_text("keep me", encoding="utf-8")
    assert main(["cassette", "import-har", str(tmp_path / "capture.har"), "--into", str(a_file)]) == 2
    _one_line_error(capsys, "afile", "not a directory")
    assert a_file.read_text(encoding="utf-8") == "keep me"


# -- 7. HEAD and 304 keep their Content-Length


def test_head_and_304_answers_keep_their_recorded_content_length(tmp_path: Path) -> None:
    into = import_har(
        tmp_path,
        har(
            entry(
                "https://files.example/tqdm.whl",
                method="HEAD",
                headers=[("Content-Type", "application/octet-stream"), ("Content-Length", "78258")],
            ),
            entry(
                "https://site.example/cached",
                status=304,
                headers=[("ETag", 'W/"a1"'), ("Content-Length", "5120")],
                content={"size": 9, "mimeType": "text/html", "text": "<p>old</p>"},  # Chrome keeps the cached body
            ),
        ),
    )
    head, cached = load_har(into / "capture.har")
    assert head.header("content-length", response=True) == "78258"
    assert cached.header("content-length", response=True) == "5120"
    head_answer, cached_answer = replayed(into, ("HEAD", "/tqdm.whl"), ("GET", "/cached"))
    assert head_answer.status_code == 200 and head_answer.headers["content-length"] == "78258"
    assert head_answer.headers["X-Replay"] == "hit"
    assert cached_answer.status_code == 304 and cached_answer.content == b""
    assert cached_answer.headers["etag"] == 'W/"a1"'
    assert in_process(into, "HEAD", "https://files.example/tqdm.whl").headers["content-length"] == "78258"


# -- 8. Charsets


def test_a_latin1_page_replays_in_its_declared_charset(tmp_path: Path) -> None:
    mime = "text/html; charset=ISO-8859-1"
    text = "<title>Café</title><p>5 €</p>"  # a browser reads ISO-8859-1 as windows-1252: byte 0x80 is €
    into = import_har(
        tmp_path,
        har(entry("https://www.example/", headers=[("Content-Type", mime)], content={"mimeType": mime, "text": text})),
    )
    (exchange,) = load_directory(into)
    assert exchange.response_body == b"<title>Caf\xe9</title><p>5 \x80</p>"
    stored = json.loads((into / "capture.har").read_text(encoding="utf-8"))
    content = stored["log"]["entries"][0]["response"]["content"]
    assert "encoding" not in content and "Café" in content["text"]  # still text in the cassette, not base64
    (answer,) = replayed(into, ("GET", "/"))
    assert answer.headers["content-type"] == mime
    assert answer.content == b"<title>Caf\xe9</title><p>5 \x80</p>" and "Café" in answer.text


def test_personal_data_in_a_latin1_body_is_redacted(tmp_path: Path) -> None:
    mime = "text/plain; charset=ISO-8859-1"
    text = "Café: écrire à contact.cafe@example.vn ou 0912345678"
    into = import_har(
        tmp_path,
        har(entry("https://www.example/c", headers=[("Content-Type", mime)], content={"mimeType": mime, "text": text})),
    )
    (exchange,) = load_directory(into)
    assert exchange.response_body.startswith(b"Caf\xe9: \xe9crire \xe0 <redacted:")
    for secret in (b"contact.cafe@example.vn", b"0912345678"):
        assert secret not in exchange.response_body


# -- 9. Encoded slashes in paths


def test_an_encoded_slash_in_a_path_is_kept(tmp_path: Path) -> None:
    url = "https://gitlab.example/api/v4/projects/group%2Fproject/repository/files/src%2Fmain.py/raw?ref=main"
    into = import_har(
        tmp_path,
        har(
            entry(url, headers=[("Content-Type", "text/plain")], content={"mimeType": "text/plain", "text": "print()"})
        ),
    )
    (exchange,) = load_directory(into)
    assert exchange.url == url
    encoded, plain = replayed(
        into,
        ("GET", "/api/v4/projects/group%2Fproject/repository/files/src%2Fmain.py/raw?ref=main"),
        ("GET", "/api/v4/projects/group/project/repository/files/src/main.py/raw?ref=main"),
    )
    assert encoded.status_code == 200 and encoded.text == "print()"
    assert plain.status_code == 501 and plain.headers["X-Replay"] == "miss"
