"""Record a real session against the REST agency simulator on loopback, stop it, replay it; redaction; faults."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from adapters.errors import TransientError
from adapters.http import ClientFactory, ClientSettings, bearer
from adapters.netguard import AddressPolicy
from adapters.onestop.rest import RestOneStopClient
from gateway.config import ConfigError, parse_section
from gateway.recording.har import load_directory
from gateway.recording.match import NoMatch
from gateway.recording.redact import PLACEHOLDER, Redactor
from gateway.recording.server import create_replay_app
from gateway.recording.settings import FaultRule, RecordingSettings
from gateway.recording.transport import install, recording_wrapper, replay_wrapper
from gateway.simulators.agency import create_app
from tests.servers import ServerThread, admin_post

AGENCY = "000.00.23.H38"
TOKEN = "sim-agency-token-s3cr3t"
CODE = f"{AGENCY}-261122-0001"
SECRETS = ("Nguyễn Văn A", "001099012345", "0912345678", "a@example.vn", TOKEN, "12 Trần Phú, Hà Tĩnh")


def dossier() -> dict[str, Any]:
    return {
        "code": CODE,
        "procedure_code": "1.009794",
        "agency_code": AGENCY,
        "applicant": {
            "kind": "citizen",
            "full_name": "Nguyễn Văn A",
            "id_number": "001099012345",
            "phone": "0912345678",
            "email": "a@example.vn",
            "address": "12 Trần Phú, Hà Tĩnh",
        },
        "summary": "Liên hệ 0912345678 hoặc a@example.vn, CCCD 001099012345",
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "fetch_url": "https://gw.example.vn/f/abc"}],
        "fees": [{"code": "LP1", "name": "Lệ phí cấp phép", "amount": 150000}],
    }


async def session(factory: ClientFactory, base_url: str, *, live: bool) -> list[Any]:
    """deliver, status, supplement, status (503), withdraw, status: what the client answered, in order."""
    settings = ClientSettings(base_url=base_url, address_policy=AddressPolicy(allow_private=True))
    client = factory.client(f"agency:{AGENCY}", settings, auth=bearer(TOKEN))
    results: list[Any] = []
    async with RestOneStopClient(client, agency_code=AGENCY) as agency:
        receipt = await agency.deliver(dossier(), "k-deliver")
        results.append((receipt.agency_reference, receipt.status, receipt.received_at, receipt.status_code))
        results.append((await agency.get_status(CODE)).status)
        ack = await agency.supplement(CODE, [{"code": "TP2", "name": "Bản vẽ"}], "k-supplement")
        results.append((ack.status, ack.status_code))
        if live:
            await admin_post(base_url, "/_sim/faults", {"fail_next": 1, "fail_status": 503})
        with pytest.raises(TransientError) as caught:
            await agency.get_status(CODE)
        results.append(("error", caught.value.status_code if hasattr(caught.value, "status_code") else None))
        ack = await agency.withdraw(CODE, "Không cần nữa", "k-withdraw")
        results.append((ack.status, ack.status_code))
        results.append((await agency.get_status(CODE)).status)
    await client.aclose()
    return results


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str, list[Any]]:
    """A cassette directory holding one recorded session, the simulator's URL (now stopped) and its answers."""
    import asyncio

    directory = tmp_path / "cassettes"
    factory = ClientFactory([recording_wrapper(directory, RecordingSettings(mode="record"))])
    with ServerThread(create_app(token=TOKEN)) as server:
        answers = asyncio.run(session(factory, server.base_url, live=True))
    return directory, server.base_url, answers


async def test_a_recorded_session_replays_without_the_upstream(recorded: tuple[Path, str, list[Any]]) -> None:
    directory, base_url, answers = recorded
    assert answers[1] == "submitted" and answers[-1] == "withdrawn"
    files = sorted(directory.glob("*.har"))
    assert len(files) == 1 and files[0].name.startswith(f"agency_{AGENCY}-")
    exchanges = load_directory(directory)
    assert [e.status for e in exchanges] == [201, 200, 200, 503, 200, 200]
    assert all(e.time_ms > 0 and e.upstream == f"agency:{AGENCY}" for e in exchanges)
    # The simulator is stopped: nothing listens there any more, and replay never tries the network.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(trust_env=False) as probe:
            await probe.get(base_url)
    wrapper = replay_wrapper(directory, RecordingSettings(mode="replay"))
    replayed = await session(ClientFactory([wrapper]), base_url, live=False)
    assert replayed == answers
    assert wrapper.replayer.index.stats.misses == 0


async def test_replay_refuses_a_request_it_has_not_seen(recorded: tuple[Path, str, list[Any]]) -> None:
    directory, base_url, _ = recorded
    factory = ClientFactory([replay_wrapper(directory)])
    settings = ClientSettings(base_url=base_url, address_policy=AddressPolicy(allow_private=True))
    async with RestOneStopClient(factory.client("agency:x", settings), agency_code=AGENCY) as agency:
        changed = {**dossier(), "procedure_code": "1.000001"}
        with pytest.raises(NoMatch) as caught:
            await agency.deliver(changed, "k-deliver")
    message = str(caught.value)
    assert "closest recorded: POST" in message and "/dossiers" in message
    assert "$.procedure_code: recorded '1.009794', request has '1.000001'" in message
    assert not any(secret in message for secret in SECRETS)


def test_no_personal_data_or_secret_reaches_any_cassette_byte(recorded: tuple[Path, str, list[Any]]) -> None:
    directory, _, _ = recorded
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            for form in {secret.encode(), json.dumps(secret).strip('"').encode()}:
                assert form not in data, f"{secret!r} found in {path.name}"
    text = b"".join(p.read_bytes() for p in directory.glob("*.har")).decode()
    assert "Bearer <redacted:" in text and "<redacted:" in text


QUESTION = "Nhà tôi ở 12 Trần Phú, xây thêm tầng 3 có cần giấy phép không?"
ANSWER = "Có, ông cần xin giấy phép xây dựng."


async def test_a_recorded_question_exchange_has_no_question_or_answer_text(tmp_path: Path) -> None:
    directory = tmp_path / "cassettes"
    factory = ClientFactory([recording_wrapper(directory, RecordingSettings(mode="record"))])
    with ServerThread(create_app(token=TOKEN)) as server:
        settings = ClientSettings(base_url=server.base_url, address_policy=AddressPolicy(allow_private=True))
        client = factory.client(f"agency:{AGENCY}", settings, auth=bearer(TOKEN))
        async with RestOneStopClient(client, agency_code=AGENCY) as agency:
            question = {"id": 42, "agency_code": AGENCY, "procedure_code": "1.009794", "question": QUESTION}
            ack = await agency.send_question(question, "question:42")
        await client.aclose()
    assert ack.status_code == 202
    recorded = b"".join(path.read_bytes() for path in directory.rglob("*.har")).decode()
    assert '\\"question\\":\\"<redacted:' in recorded and "Trần Phú" not in recorded and "tầng 3" not in recorded
    assert json.dumps(QUESTION)[1:-1] not in recorded and "1.009794" in recorded  # the rest stays readable
    notice = {"type": "question_answered", "question": {"id": 42, "answer": ANSWER, "answered_by": "Phòng QLXD"}}
    redacted = Redactor(b"salt").redact_body(json.dumps(notice).encode(), "application/json") or b""
    assert "giấy phép" not in redacted.decode() and json.loads(redacted)["type"] == "question_answered"


def test_cassettes_are_valid_har_for_a_standard_reader(recorded: tuple[Path, str, list[Any]]) -> None:
    haralyzer = pytest.importorskip("haralyzer")
    directory, _, _ = recorded
    for path in directory.glob("*.har"):
        document = json.loads(path.read_text(encoding="utf-8"))
        assert document["log"]["version"] == "1.2"
        parser = haralyzer.HarParser(document)
        assert parser.creator["name"] == "dvc-gateway"
        page_entries = [haralyzer.HarEntry(entry) for entry in document["log"]["entries"]]
        assert [entry.request.method for entry in page_entries] == ["POST", "GET", "POST", "GET", "POST", "GET"]
        assert page_entries[0].response.status == 201
        check_har_structure(document)


HAR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["log"],
    "properties": {
        "log": {
            "type": "object",
            "required": ["version", "creator", "entries"],
            "properties": {
                "version": {"type": "string"},
                "creator": {"type": "object", "required": ["name", "version"]},
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["startedDateTime", "time", "request", "response", "cache", "timings"],
                        "properties": {
                            "request": {
                                "type": "object",
                                "required": [
                                    "method",
                                    "url",
                                    "httpVersion",
                                    "cookies",
                                    "headers",
                                    "queryString",
                                    "headersSize",
                                    "bodySize",
                                ],
                                "properties": {
                                    "postData": {"type": "object", "required": ["mimeType"]},
                                    "headers": {
                                        "type": "array",
                                        "items": {"type": "object", "required": ["name", "value"]},
                                    },
                                },
                            },
                            "response": {
                                "type": "object",
                                "required": [
                                    "status",
                                    "statusText",
                                    "httpVersion",
                                    "cookies",
                                    "headers",
                                    "content",
                                    "redirectURL",
                                    "headersSize",
                                    "bodySize",
                                ],
                                "properties": {"content": {"type": "object", "required": ["size", "mimeType"]}},
                            },
                            "timings": {"type": "object", "required": ["send", "wait", "receive"]},
                        },
                    },
                },
            },
        }
    },
}


def check_har_structure(document: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(document, HAR_SCHEMA)


async def test_faults_are_injected_on_chosen_exchanges(recorded: tuple[Path, str, list[Any]]) -> None:
    directory, base_url, _ = recorded
    faults = [
        FaultRule(kind="drop", method="POST", url_contains="/dossiers", nth=1),
        FaultRule(kind="status", method="GET", status=502, times=1),
        FaultRule(kind="soap_fault", url_contains="/withdraw"),
        FaultRule(kind="delay", url_contains="/supplements", seconds=0.01),
    ]
    factory = ClientFactory([replay_wrapper(directory, faults=faults)])
    async with factory.client("agency:x", ClientSettings(base_url=base_url, verify=False)) as client:
        with pytest.raises(httpx.ConnectError, match="dropped"):
            await client.post("/dossiers", content=b"{}")
        answer = await client.get(f"/dossiers/{CODE}")
        assert answer.status_code == 502
        answer = await client.post(f"/dossiers/{CODE}/withdraw", content=b"{}")
        assert answer.status_code == 500 and b"soap:Server" in answer.content


async def test_replay_serve_answers_over_http(recorded: tuple[Path, str, list[Any]]) -> None:
    directory, _, answers = recorded
    with ServerThread(create_replay_app(directory)) as server:
        replayed = await session(ClientFactory(), server.base_url, live=False)
        async with httpx.AsyncClient(base_url=server.base_url, trust_env=False) as raw:
            miss = await raw.get("/nothing/here")
    assert replayed == answers
    assert miss.status_code == 501 and miss.headers["X-Replay"] == "miss"
    assert "closest recorded" in miss.json()["detail"]


def test_install_follows_the_mode(tmp_path: Path) -> None:
    factory = ClientFactory()
    assert install(factory, parse_section(RecordingSettings, {"mode": "off"}, "recording")) is None
    section = {"mode": "record", "directory": "rec", "replay_latency": True}
    settings = parse_section(RecordingSettings, section, "recording", tmp_path)
    assert settings.directory == tmp_path / "rec" and settings.replay_latency == 1.0
    assert install(factory, settings) is not None and len(factory.wrappers) == 1
    with pytest.raises(ConfigError, match=r"^\[recording\] mode: must be one of 'off', 'record' or 'replay'$"):
        parse_section(RecordingSettings, {"mode": "sometimes"}, "recording")
    with pytest.raises(ConfigError, match=r"^\[recording\] colour: unknown key"):
        parse_section(RecordingSettings, {"colour": "red"}, "recording")
    with pytest.raises(ConfigError, match=r"^\[recording\] replay_latency: must be true, false or a non-negative"):
        parse_section(RecordingSettings, {"replay_latency": -1}, "recording")
    with pytest.raises(ValueError, match="kind"):
        FaultRule(kind="explode")  # type: ignore[arg-type]


async def test_the_cassette_fixture_and_respx_on_top(
    recorded: tuple[Path, str, list[Any]], request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, base_url, _ = recorded
    # Point the plugin's --replay root at the recorded directory's parent, then resolve the fixture.
    monkeypatch.setattr(request.config.option, "replay", str(directory.parent), raising=False)
    request.node.add_marker(pytest.mark.cassette("cassettes"))
    factory = request.getfixturevalue("cassette")
    settings = ClientSettings(base_url=base_url, address_policy=AddressPolicy(allow_private=True))
    with respx.mock(using="httpx", assert_all_called=True) as mock:
        mock.get(f"{base_url}/dossiers/OTHER").respond(200, json={"code": "OTHER", "status": "completed"})
        mock.route().pass_through()
        async with RestOneStopClient(factory.client("agency:x", settings, auth=bearer(TOKEN)), agency_code=AGENCY) as a:
            assert (await a.get_status("OTHER")).status == "completed"  # respx answers
            receipt = await a.deliver(dossier(), "k-deliver")  # the cassette answers
    assert receipt.agency_reference == "SIM-000001"
    assert factory.replayer.index.stats.hits == 1


async def test_recorded_latency_is_replayed_on_request(recorded: tuple[Path, str, list[Any]]) -> None:
    import time

    directory, base_url, _ = recorded
    slow = RecordingSettings(mode="replay", replay_latency=1.0)
    factory = ClientFactory([replay_wrapper(directory, slow)])
    recorded_ms = load_directory(directory)[1].time_ms
    async with factory.client("agency:x", ClientSettings(base_url=base_url, verify=False)) as client:
        begin = time.perf_counter()
        await client.get(f"/dossiers/{CODE}")
        assert (time.perf_counter() - begin) * 1000 >= recorded_ms * 0.9


def test_the_replay_serve_command_serves_a_directory(recorded: tuple[Path, str, list[Any]]) -> None:
    import subprocess
    import sys

    directory, _, _ = recorded
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "replay", "serve", str(directory), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        answer = httpx.get(f"{url}/dossiers/{CODE}", trust_env=False, timeout=10)
        assert answer.status_code == 200 and answer.headers["X-Replay"] == "hit"
        assert answer.json()["status"] == "submitted"
        # One Date header, the recorded one (not the server's as well); one Server header at most.
        recorded_dates = {v for e in load_directory(directory) for k, v in e.response_headers if k.lower() == "date"}
        assert len(answer.headers.get_list("date")) == 1 and answer.headers["date"] in recorded_dates
        assert len(answer.headers.get_list("server")) <= 1
        miss = httpx.get(f"{url}/nothing/here", trust_env=False, timeout=10)
        assert miss.status_code == 501 and len(miss.headers.get_list("date")) == 1
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_the_replay_serve_command_refuses_a_directory_without_cassettes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a cassette", encoding="utf-8")
    assert main(["replay", "serve", str(empty), "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"dvc-gateway: error: no cassettes in {empty}")


def test_a_placeholder_never_reads_as_an_id_number() -> None:
    """Twelve hex digits can all be decimal digits: such a placeholder would look like a citizen's ID number."""
    redactor = Redactor(salt=b"fixed salt for this test")
    values = [f"value-{n}" for n in range(20000)]
    placeholders = {redactor.placeholder(v) for v in values}
    assert all(PLACEHOLDER.fullmatch(p) for p in placeholders)
    assert not any(re.search(r"\d{12}", p) for p in placeholders)
    all_digits = [v for v in values if redactor.placeholder(v)[10:22].isdigit()]
    assert all_digits == []
    # Some digests of these values are all digits (about 0.35%): they were turned, not dropped.
    turned = [p for p in placeholders if p[10] in "ghijklmnop"]
    assert turned and all(p[11:22].isdigit() for p in turned)
