"""Record the gateway's real flow against the simulators, stop them, replay it on a fresh database: same journeys.

The flow is the demo's (``gateway/commands/demo.py``: its configuration, sample documents and applicants), run by
the daemon (API and outbox worker) on loopback with ``[recording] mode = "record"``, then again with ``mode =
"replay"`` after every simulator has stopped: a REST agency (bearer token), a SOAP agency (zeep, WS-Security
UsernameToken with PasswordDigest: a fresh nonce, creation time and digest in every message), and the provincial
portal's webhook (``tests/recording_e2e_support.py``). The national portal, payment and postal adapters are recorded
and replayed through the same runtime client factory (``tests/test_recording_runtime.py``). Then the cassettes are
scanned for personal data and secrets, loaded in a standard HAR parser, served by ``dvc-gateway replay serve`` and
handled by the ``cassette`` commands.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.http import ClientSettings
from adapters.netguard import AddressPolicy
from adapters.xmlguard import hardened_parser
from gateway.cli import main
from gateway.recording.har import load_directory, load_har
from gateway.recording.match import NoMatch
from gateway.recording.redact import PLACEHOLDER
from gateway.recording.settings import RecordingSettings
from gateway.recording.transport import Replayer
from gateway.simulators.agency import create_app as create_rest_simulator
from gateway.simulators.soap_agency import create_soap_app
from tests.recording_e2e_support import (
    PERSONAL,
    REST_AGENCY,
    SOAP_AGENCY,
    TOKENS,
    WSSE_USER,
    Upstreams,
    _runtime,
    journey,
    portal_receiver,
    run_flow,
)
from tests.servers import ServerThread


@pytest.fixture(scope="module")
def session_recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One recorded run and one replayed run of the flow (module-wide: the other tests read the cassettes)."""
    root = tmp_path_factory.mktemp("e2e")
    cassettes = root / "cassettes"
    with (
        ServerThread(create_rest_simulator(token=TOKENS["outbound"])) as rest,
        ServerThread(create_soap_app(wsse=(WSSE_USER, TOKENS["wsse"]))) as soap,
        ServerThread(portal_receiver()) as portal,
    ):
        upstreams = Upstreams(rest.base_url, soap.base_url, portal.base_url)
        recorded, record_runtime = asyncio.run(run_flow(root / "record", cassettes, "record", upstreams))
        record_runtime.close()
        rest_effects = dict(rest.app.state.simulator.effects)
        soap_effects = dict(soap.app.state.simulator.core.effects)
        notifications = list(portal.app.state.received)
    # Every simulator has stopped: nothing listens at the recorded addresses any more.
    for url in (upstreams.rest, upstreams.soap, upstreams.portal):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, trust_env=False, timeout=5)
    replayed, replay_runtime = asyncio.run(run_flow(root / "replay", cassettes, "replay", upstreams))
    replayer = replay_runtime.client_factory.wrappers[-1].replayer
    replay_runtime.close()
    return {
        "root": root,
        "cassettes": cassettes,
        "recorded": recorded,
        "replayed": replayed,
        "replayer": replayer,
        "rest_effects": rest_effects,
        "soap_effects": soap_effects,
        "notifications": notifications,
        "upstreams": upstreams,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Record, stop, replay


def test_a_replayed_run_gives_the_same_journeys(session_recorded: dict[str, Any]) -> None:
    recorded, replayed = session_recorded["recorded"], session_recorded["replayed"]
    assert [journey(d) for d in replayed] == [journey(d) for d in recorded]
    statuses = [d["status"] for d in recorded]
    assert statuses == ["completed", "received", "completed"]
    assert [h["status"] for h in recorded[1]["history"]][-2:] == ["supplement_requested", "received"]
    # The live run did reach the upstreams: deliveries, the supplement, the portal's notifications.
    assert session_recorded["rest_effects"].get("deliver") == 2 and session_recorded["rest_effects"]["supplement"] == 1
    assert session_recorded["soap_effects"].get("deliver") == 1
    assert len(session_recorded["notifications"]) >= 7
    # The replay answered everything from the cassettes.
    stats = session_recorded["replayer"].index.stats
    assert stats.misses == 0 and stats.hits >= 3 + 1 + len(session_recorded["notifications"])


def test_one_cassette_per_upstream_and_run(session_recorded: dict[str, Any]) -> None:
    upstreams = {e.upstream for e in load_directory(session_recorded["cassettes"])}
    assert {f"agency:{REST_AGENCY}", f"agency:{SOAP_AGENCY}", "portal"} <= upstreams, upstreams
    names = sorted(p.name for p in session_recorded["cassettes"].glob("*.har"))
    assert len(names) == len(upstreams)
    soap = [e for e in load_directory(session_recorded["cassettes"]) if e.upstream == f"agency:{SOAP_AGENCY}"]
    assert any(e.method == "GET" and "wsdl" in e.url for e in soap)  # the WSDL fetch, recorded like the rest
    assert any(b"TiepNhanHoSo" in (e.request_body or b"") for e in soap)


def test_no_personal_data_or_secret_in_any_cassette_byte(session_recorded: dict[str, Any]) -> None:
    files = [p for p in session_recorded["cassettes"].rglob("*") if p.is_file() and p.suffix == ".har"]
    assert files
    needles = [*PERSONAL, *TOKENS.values()]
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            for form in {needle.encode(), json.dumps(needle).strip('"').encode()}:
                assert form not in data, f"{needle!r} found in {path.name}"
        # Placeholders are known by their format; what is left must hold no personal data.
        text = PLACEHOLDER.sub("<redacted>", data.decode("utf-8"))
        # No ID number (9 or 12 digits), phone number or e-mail address left anywhere, whatever the key.
        assert not re.search(r"(?<![\w.])(?:\d{12}|\d{9})(?![\w.])", text), path.name
        assert not re.search(r"(?<![\w.+])(?:\+?84|0)\d{9,10}(?![\w.])", text), path.name
        assert not re.search(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}", text), path.name
    joined = b"".join(p.read_bytes() for p in files)
    assert b"Bearer <redacted:" in joined and b"<redacted:" in joined


def test_the_cassettes_load_in_a_standard_har_parser(session_recorded: dict[str, Any]) -> None:
    haralyzer = pytest.importorskip("haralyzer")
    jsonschema = pytest.importorskip("jsonschema")
    from tests.test_recording_session import HAR_SCHEMA

    for path in session_recorded["cassettes"].glob("*.har"):
        document = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(document, HAR_SCHEMA)
        parser = haralyzer.HarParser(document)
        assert parser.har_data["version"] == "1.2" and parser.creator["name"] == "dvc-gateway"
        entries = [haralyzer.HarEntry(entry) for entry in document["log"]["entries"]]
        assert entries and all(entry.request.method in ("GET", "POST") for entry in entries)
        assert all(100 <= entry.response.status < 600 for entry in entries)


# ----------------------------------------------------------------------------------------------------------------------
# Matching SOAP: volatile elements ignored, the dossier code not


def _delivery_envelope(cassettes: Path) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
    for exchange in load_directory(cassettes):
        if exchange.upstream == f"agency:{SOAP_AGENCY}" and b"TiepNhanHoSo" in (exchange.request_body or b""):
            return exchange.url, exchange.request_headers, exchange.request_body or b""
    raise AssertionError("no SOAP delivery recorded")


def _with(body: bytes, changes: dict[str, str], header: dict[str, str] | None = None) -> bytes:
    root = etree.fromstring(body, hardened_parser())
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).localname in changes:
            element.text = changes[etree.QName(element).localname]
    if header:
        soap_header = next(e for e in root if etree.QName(e).localname == "Header")
        for name, value in header.items():
            child = etree.SubElement(soap_header, f"{{http://www.w3.org/2005/08/addressing}}{name}")
            child.text = value
    return etree.tostring(root)


def test_a_changed_message_id_or_timestamp_matches_but_a_changed_dossier_code_does_not(
    session_recorded: dict[str, Any],
) -> None:
    cassettes = session_recorded["cassettes"]
    url, headers, body = _delivery_envelope(cassettes)
    recorded_code = session_recorded["recorded"][2]["code"]
    assert recorded_code.encode() in body and b"Nonce" in body and b"Created" in body
    replayer = Replayer(cassettes, RecordingSettings(mode="replay"))
    volatile = _with(
        body,
        {"Created": "2031-01-01T00:00:00Z", "Nonce": "bm9uY2UtbmV3", "Password": "ZGlnZXN0LW5ldw=="},
        header={"MessageID": f"urn:uuid:{secrets.token_hex(16)}", "RelatesTo": "urn:uuid:x"},
    )
    assert replayer.find("POST", url, headers, volatile).status == 200
    other_code = recorded_code[:-4] + "9999"
    with pytest.raises(NoMatch) as caught:
        replayer.find("POST", url, headers, _with(body, {"MaHoSo": other_code}))
    message = str(caught.value)
    assert "closest recorded: POST" in message and "/soap" in message
    assert "first difference: body /Envelope/Body/" in message and "/MaHoSo" in message
    assert recorded_code in message and other_code in message
    assert "\n" not in message


# ----------------------------------------------------------------------------------------------------------------------
# Faults from [recording], replay serve, cassette commands


def _recorded(cassettes: Path, upstream: str, marker: bytes) -> Any:
    return next(e for e in load_directory(cassettes) if e.upstream == upstream and marker in (e.request_body or b""))


def test_faults_configured_in_recording_hit_the_chosen_exchanges(session_recorded: dict[str, Any]) -> None:
    cassettes, root = session_recorded["cassettes"], session_recorded["root"]
    soap_delivery = _recorded(cassettes, f"agency:{SOAP_AGENCY}", b"TiepNhanHoSo")
    rest_delivery = _recorded(cassettes, f"agency:{REST_AGENCY}", b'"code"')
    webhook = _recorded(cassettes, "portal", b"dossier_code")
    faults = [
        {"kind": "drop", "upstream": f"agency:{REST_AGENCY}", "method": "POST", "nth": 1},
        {"kind": "status", "status": 503, "url_contains": "/hook", "times": 1},
        {"kind": "soap_fault", "upstream": f"agency:{SOAP_AGENCY}", "body_contains": "TiepNhanHoSo", "message": "Bận"},
        {"kind": "delay", "seconds": 0.01, "upstream": f"agency:{REST_AGENCY}"},
    ]
    runtime = _runtime(root, "replay", cassettes, faults=faults)
    factory = runtime.client_factory

    async def exercise() -> list[Any]:
        policy = AddressPolicy(allow_private=True)
        seen: list[Any] = []

        async def send(upstream: str, exchange: Any) -> httpx.Response:
            settings = ClientSettings(base_url=exchange.url, address_policy=policy)
            async with factory.client(upstream, settings) as client:
                return await client.post(exchange.url, content=exchange.request_body, headers=exchange.request_headers)

        with pytest.raises(httpx.ConnectError, match="dropped"):
            await send(f"agency:{REST_AGENCY}", rest_delivery)
        seen.append((await send(f"agency:{REST_AGENCY}", rest_delivery)).status_code)  # 2nd: delayed, recorded
        seen.append((await send("portal", webhook)).status_code)  # 503 once
        seen.append((await send("portal", webhook)).status_code)  # then the recording
        fault = await send(f"agency:{SOAP_AGENCY}", soap_delivery)
        seen.append((fault.status_code, b"soap:Server" in fault.content, "Bận" in fault.text))
        return seen

    assert asyncio.run(exercise()) == [rest_delivery.status, 503, 200, (500, True, True)]


def test_replay_serve_answers_a_plain_client_over_loopback(session_recorded: dict[str, Any]) -> None:
    cassettes = session_recorded["cassettes"]
    rest_delivery = _recorded(cassettes, f"agency:{REST_AGENCY}", b'"code"')
    status_query = next(
        (e for e in load_directory(cassettes) if e.method == "GET" and e.upstream == f"agency:{REST_AGENCY}"), None
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "replay", "serve", str(cassettes), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:"), line
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as plain:
            path = httpx.URL(rest_delivery.url).path
            answer = plain.post(path, content=rest_delivery.request_body, headers={"Content-Type": "application/json"})
            assert answer.status_code == rest_delivery.status and answer.headers["X-Replay"] == "hit"
            assert answer.json() == json.loads(rest_delivery.response_body)
            if status_query is not None:
                assert plain.get(httpx.URL(status_query.url).path).status_code == status_query.status
            miss = plain.post(path, json={"code": "000.00.23.H38-000000-0000"})
            assert miss.status_code == 501 and miss.headers["X-Replay"] == "miss"
            assert "closest recorded: POST /dossiers" in miss.json()["detail"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert "Traceback" not in (process.stderr.read() if process.stderr else "")


def _cli(*argv: str) -> tuple[int, str, str]:
    """``python -m gateway ARGV`` as a process."""
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout, result.stderr


def _in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The same command through :func:`gateway.cli.main` in this process (what the console script runs)."""
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cassette_commands_from_the_cli(
    session_recorded: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first command runs as a process; the others through the same entry point in this process."""
    cassettes = session_recorded["cassettes"]
    total = len(load_directory(cassettes))
    code, out, err = _cli("cassette", "show", str(cassettes), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == total and {r["upstream"] for r in rows} >= {"portal", f"agency:{SOAP_AGENCY}"}
    exported = tmp_path / "all.har"
    code, _, err = _in_process(capsys, "cassette", "export-har", str(cassettes), "--out", str(exported))
    assert code == 0, err
    assert len(load_har(exported)) == total
    imported = tmp_path / "imported"
    code, out, err = _in_process(capsys, "cassette", "import-har", str(exported), "--into", str(imported))
    assert code == 0 and f"{total} exchange(s) imported" in out, err
    code, out, err = _in_process(capsys, "cassette", "redact", str(imported))
    assert code == 0 and f"{total} exchange(s)" in out, err
    assert [e.url for e in load_directory(imported)] == [e.url for e in load_directory(cassettes)]
    vcr = tmp_path / "session.yaml"
    vcr.write_text(
        "interactions:\n- request: {method: GET, uri: 'http://a.example/x?phone=0912345678', body: null, headers: {}}\n"
        "  response: {status: {code: 200, message: OK}, headers: {}, body: {string: ok}}\nversion: 1\n",
        encoding="utf-8",
    )
    code, out, err = _in_process(capsys, "cassette", "import-vcr", str(vcr), "--into", str(imported))
    assert code == 0, err
    assert b"0912345678" not in (imported / "session.har").read_bytes()
    # Bad input: one line on stderr, exit code 2, no traceback.
    broken = tmp_path / "broken.har"
    broken.write_text('{"log": {"entries": [{"request": {}}]}}', encoding="utf-8")
    evil = tmp_path / "evil.yaml"
    evil.write_text("interactions: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    for argv, message in (
        (("cassette", "import-har", str(broken), "--into", str(tmp_path / "x")), "entry 0"),
        (("cassette", "import-har", str(tmp_path / "absent.har")), "no such file"),
        (("cassette", "import-vcr", str(evil), "--into", str(tmp_path / "x")), "not a safe YAML cassette"),
        (("cassette", "show", str(tmp_path / "absent")), "absent"),
        (("cassette", "export-har", str(broken)), "entry 0"),
        (("cassette", "redact", str(tmp_path / "absent")), "absent"),
        (("replay", "serve", str(tmp_path / "absent")), "no such cassette directory"),
    ):
        code, _, err = _in_process(capsys, *argv)
        assert code == 2, (argv, err)
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
