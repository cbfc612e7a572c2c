"""Record the gateway's real flow against the simulators, stop them, replay it on a fresh database: same journeys.

The flow is the demo's (``gateway/commands/demo.py``: its configuration, sample documents and applicants), run by
the daemon (API and outbox worker) on loopback with ``[recording] mode = "record"``, then again with ``mode =
"replay"`` after every simulator has stopped: a REST agency (bearer token), a SOAP agency (zeep, WS-Security
UsernameToken with PasswordDigest: a fresh nonce, creation time and digest in every message), and the provincial
portal's webhook. The national portal, payment and postal adapters are recorded and replayed through the same
runtime client factory. Then the cassettes are scanned for personal data and secrets, loaded in a standard HAR
parser, served by ``dvc-gateway replay serve`` and handled by the ``cassette`` commands.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.http import ClientFactory, ClientSettings
from adapters.national_portal import NationalPortalClient
from adapters.national_portal.wire import Channel, DossierRecord
from adapters.netguard import AddressPolicy
from adapters.payment import VNPayProvider
from adapters.postal import PostalClient
from adapters.xmlguard import hardened_parser
from gateway.catalogue import import_procedures, load_catalogue
from gateway.commands.demo import DEMO_DATA as EXAMPLES
from gateway.commands.demo import SAMPLE_APPLICANTS, _config_text, _file, _submission
from gateway.config import ConfigError
from gateway.daemon import listen_socket, run_daemon
from gateway.recording.har import load_directory, load_har
from gateway.recording.match import NoMatch
from gateway.recording.redact import PLACEHOLDER
from gateway.recording.runtime import client_factory_for
from gateway.recording.settings import RecordingSettings
from gateway.recording.transport import Replayer
from gateway.runtime import Runtime
from gateway.settings import Settings, load_settings
from gateway.simulators.agency import create_app as create_rest_simulator
from gateway.simulators.soap_agency import create_soap_app
from tests.servers import ServerThread

REST_AGENCY = "000.00.23.H38"
SOAP_AGENCY = "000.00.10.H38"
WSSE_USER = "lgsp-dkkd"
TOKENS = {
    "portal": "portal-token-e2e-" + "p" * 16,
    "admin": "admin-token-e2e-" + "a" * 16,
    "agency": "agency-token-e2e-" + "b" * 16,
    "agency2": "agency2-token-e2e-" + "g" * 16,
    "soap_agency": "soap-agency-token-e2e-" + "c" * 12,
    "outbound": "outbound-token-e2e-" + "d" * 16,
    "wsse": "wsse-password-e2e-" + "e" * 12,
    "webhook": "webhook-token-e2e-" + "f" * 16,
}
#: Personal data of the flow: none of it may reach a cassette byte.
PERSONAL = [value for applicant in SAMPLE_APPLICANTS for key, value in applicant.items() if key != "kind"] + [
    "Số 1, đường Mẫu"
]
PORTAL_PASSWORD = "national-portal-password-e2e"
PAYMENT_SECRET = "payment-hash-secret-e2e"
POSTAL_SECRET = "postal-shared-secret-e2e"
WAIT_SECONDS = 30.0


# ----------------------------------------------------------------------------------------------------------------------
# The flow


class Upstreams:
    """Where the upstreams are (recorded there; nothing listens there during replay)."""

    def __init__(self, rest: str, soap: str, portal: str) -> None:
        self.rest, self.soap, self.portal = rest, soap, portal


def portal_receiver() -> Starlette:
    """The provincial portal's webhook endpoint: accepts every notification, keeps them."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True, "received": len(received)})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.received = received
    return app


def config_text(work: Path, port: int, cassettes: Path, mode: str, upstreams: Upstreams, **recording: Any) -> str:
    extra = dict(recording)
    lines = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return (
        _config_text(work, port, TOKENS)
        + f"""
[[auth.tokens]]
token = "{TOKENS["soap_agency"]}"
role = "agency:{SOAP_AGENCY}"

[portal]
webhook_url = "{upstreams.portal}/hook"
token = "{TOKENS["webhook"]}"

[recording]
mode = "{mode}"
directory = {json.dumps(str(cassettes))}
"""
        + "\n".join(lines)
        + "\n"
    )


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


async def run_flow(work: Path, cassettes: Path, mode: str, upstreams: Upstreams) -> tuple[list[dict], Runtime]:
    """The demo's story (and a SOAP agency, and the portal webhook) through the daemon; the dossiers as read back."""
    from gateway.commands.serve import open_runtime

    work.mkdir(parents=True, exist_ok=True)
    (work / "outbound-token").write_text(TOKENS["outbound"], encoding="utf-8")
    (work / "wsse-password").write_text(TOKENS["wsse"], encoding="utf-8")
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config_path = work / "gateway.toml"
    config_path.write_text(config_text(work, port, cassettes, mode, upstreams), encoding="utf-8")
    runtime = open_runtime(load_settings(config_path, environ={}))
    with runtime.db.unit_of_work() as session:
        import_procedures(session, load_catalogue(EXAMPLES / "procedures.json"))
    stop, ready = asyncio.Event(), asyncio.Event()
    daemon = asyncio.create_task(
        run_daemon(
            runtime,
            sock=sock,
            stop=stop,
            handle_signals=False,
            on_ready=lambda _url: ready.set(),
            worker_options={"poll_interval": 0.05},
            close_runtime=False,
        )
    )
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    portal = {"Authorization": f"Bearer {TOKENS['portal']}"}
    try:
        await asyncio.wait_for(ready.wait(), WAIT_SECONDS)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as gateway:

            async def idle() -> bool:
                stats = _ok(await gateway.get("/api/v1/admin/outbox", headers=admin))["stats"]
                dead = _ok(await gateway.get("/api/v1/admin/outbox?state=dead", headers=admin))["messages"]
                assert not stats.get("dead"), [m.get("last_error") or m for m in dead]
                return not stats.get("pending") and not stats.get("in_flight")

            async def event(agency: str, code: str, token: str, **fields: Any) -> None:
                body = {"dossier_code": code, **fields}
                answer = await gateway.post(
                    f"/api/v1/agencies/{agency}/events", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                _ok(answer)

            rest = {
                "code": REST_AGENCY,
                "name": "Sở Xây dựng (mô phỏng)",
                "protocol": "rest",
                "endpoint": upstreams.rest,
                "procedures": ["1.009794"],
                "auth": {"type": "bearer", "token": f"file:{work / 'outbound-token'}"},
                "status_updates": {"mode": "callback"},
            }
            soap = {
                "code": SOAP_AGENCY,
                "name": "Sở Kế hoạch và Đầu tư (mô phỏng)",
                "protocol": "soap",
                "wsdl": f"{upstreams.soap}/soap?wsdl",
                "procedures": ["2.001610"],
                "auth": {
                    "type": "wsse",
                    "username": WSSE_USER,
                    "password": f"file:{work / 'wsse-password'}",
                    "digest": True,
                },
                "status_updates": {"mode": "callback"},
            }
            for document in (rest, soap):  # the SOAP one: its WSDL fetched and checked through the factory
                _ok(await gateway.post("/api/v1/admin/agencies", json=document, headers=admin), 201)

            signed = _submission(
                [
                    _file("don-de-nghi.pdf", "TP1"),
                    _file("anh-cccd.jpg", "TP2", signature="anh-cccd.jpg.p7s"),
                    _file("to-khai.xml", "TP3"),
                ],
                "Cấp giấy phép xây dựng nhà ở riêng lẻ (hồ sơ ký số)",
                SAMPLE_APPLICANTS[0],
            )
            unsigned = _submission(
                [_file("ban-sao.pdf", code) for code in ("TP1", "TP2", "TP3")],
                "Cấp giấy phép xây dựng nhà ở riêng lẻ (hồ sơ giấy scan)",
                SAMPLE_APPLICANTS[1],
            )
            business = {
                **_submission(
                    [_file("don-de-nghi.pdf", "TP1"), _file("ban-sao.pdf", "TP2")],
                    "Đăng ký thành lập doanh nghiệp tư nhân",
                    SAMPLE_APPLICANTS[0],
                ),
                "procedure_code": "2.001610",
                "agency_code": SOAP_AGENCY,
                "fees": None,
                "return_method": "in_person",
            }
            codes = []
            for number, body in enumerate((signed, unsigned, business)):  # one by one: the same codes every run
                headers = {**portal, "Idempotency-Key": f"e2e-{number}"}
                codes.append(_ok(await gateway.post("/api/v1/dossiers", json=body, headers=headers), 201)["code"])
            await _until("the deliveries", idle)

            token, soap_token = TOKENS["agency"], TOKENS["soap_agency"]
            for status, note in (
                ("received", "Hồ sơ đầy đủ, hợp lệ"),
                ("processing", "Chuyển phòng chuyên môn thẩm định"),
                ("completed", "Đã cấp giấy phép xây dựng"),
            ):
                await event(REST_AGENCY, codes[0], token, status=status, note=note)
            await event(
                REST_AGENCY,
                codes[1],
                token,
                status="supplement_requested",
                reason="Đơn đề nghị chưa được ký số",
                components=["TP1"],
                note="Bổ sung đơn đề nghị có chữ ký số",
            )
            supplement = {"components": [_file("don-de-nghi.pdf", "TP1")], "note": "Đơn đề nghị đã ký số"}
            _ok(
                await gateway.post(
                    f"/api/v1/dossiers/{codes[1]}/supplements",
                    json=supplement,
                    headers={**portal, "Idempotency-Key": "e2e-supplement"},
                )
            )
            await _until("the supplement's delivery", idle)
            await event(SOAP_AGENCY, codes[2], soap_token, status="received", note="Tiếp nhận")
            await event(SOAP_AGENCY, codes[2], soap_token, status="completed", note="Đã cấp giấy chứng nhận")
            await _until("the portal notifications", idle)
            journeys = [_ok(await gateway.get(f"/api/v1/dossiers/{code}", headers=portal)) for code in codes]
    finally:
        stop.set()
        await asyncio.wait_for(daemon, WAIT_SECONDS)
        sock.close()
    return journeys, runtime


def journey(dossier: dict[str, Any]) -> dict[str, Any]:
    """What must be the same in both runs (times differ: the runs happen at different moments)."""
    return {
        "code": dossier["code"],
        "status": dossier["status"],
        "national_status_code": dossier["national_status_code"],
        "history": [(h["status"], h["actor"], h.get("note")) for h in dossier["history"]],
        "verdicts": [(c["code"], (c.get("verification") or {}).get("verdict")) for c in dossier["components"]],
        "originals_check_required": dossier["originals_check_required"],
    }


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
# National portal, payment and postal through the runtime's factory


def _runtime(tmp_path: Path, mode: str, cassettes: Path, **recording: Any) -> Runtime:
    """A runtime without a database, its ``[recording]`` section as given."""
    settings = Settings.from_raw({"recording": {"mode": mode, "directory": str(cassettes), **recording}}, tmp_path)
    return Runtime.from_settings(settings, db=None)  # type: ignore[arg-type]


async def _other_upstreams(factory: ClientFactory, urls: dict[str, str]) -> list[Any]:
    """A national portal sync, a payment query and a postal order through ``factory``: what each answered."""
    policy = AddressPolicy(allow_private=True)
    answers: list[Any] = []
    async with factory.client("national_portal", ClientSettings(base_url=urls["national"], address_policy=policy)) as h:
        portal = NationalPortalClient(h, username="lgsp", password=PORTAL_PASSWORD, dstcode="H38", madonvi="H38")
        record = DossierRecord(
            code=f"{REST_AGENCY}-261123-0001",
            procedure_code="1.009794",
            status_code=2,
            received_at=datetime.now(UTC),
            due_at=datetime.now(UTC) + timedelta(days=15),
            channel=Channel.ONLINE,
            applicant_name=str(SAMPLE_APPLICANTS[0]["full_name"]),
            phone=str(SAMPLE_APPLICANTS[0]["phone"]),
        )
        result = await portal.sync_dossiers([record], updating=False)
        answers.append(("national", len(result.accepted), len(result.failed)))
    async with factory.client("payment", ClientSettings(base_url=urls["payment"], address_policy=policy)) as h:
        vnpay = VNPayProvider(h, merchant_code="DVCH38", secret=PAYMENT_SECRET, payment_url=f"{urls['payment']}/pay")
        status = await vnpay.query("E2E-REF-1", transaction_date="20261123083000")
        answers.append(("payment", status.state, status.reference))
    async with factory.client("postal", ClientSettings(base_url=urls["postal"], address_policy=policy)) as h:
        postal = PostalClient(h, secret=POSTAL_SECRET, attempts=1)
        applicant = {"name": "Trần Thị B", "phone": "0987654321", "address": "12 Trần Phú, Hà Tĩnh"}
        office = {"name": "Bộ phận Một cửa tỉnh", "phone": "02393123456", "address": "1 Nguyễn Du, Hà Tĩnh"}
        items = [{"name": "Bản gốc giấy tờ đối chiếu", "quantity": 1}]
        order = await postal.create_order("pickup", record.code, applicant, office, items, f"{record.code}:pickup")
        answers.append(("postal", order.order_code, order.status))
    return answers


def test_national_portal_payment_and_postal_record_and_replay_through_the_runtime(tmp_path: Path) -> None:
    from gateway.simulators.national_portal import create_app as national_app
    from gateway.simulators.payment import create_app as payment_app
    from gateway.simulators.postal import create_app as postal_app

    cassettes = tmp_path / "cassettes"
    with (
        ServerThread(national_app(password=PORTAL_PASSWORD, madonvi="H38")) as national,
        ServerThread(payment_app(secret=PAYMENT_SECRET)) as payment,
        ServerThread(postal_app(secret=POSTAL_SECRET)) as postal,
    ):
        urls = {"national": national.base_url, "payment": payment.base_url, "postal": postal.base_url}
        record = _runtime(tmp_path, "record", cassettes)
        live = asyncio.run(_other_upstreams(record.client_factory, urls))
    assert live[0] == ("national", 1, 0) and live[2][2] == "accepted"
    upstreams = {e.upstream for e in load_directory(cassettes)}
    assert upstreams == {"national_portal", "payment", "postal"}
    data = b"".join(p.read_bytes() for p in cassettes.glob("*.har"))
    for secret in (PORTAL_PASSWORD, PAYMENT_SECRET, POSTAL_SECRET, "Trần Thị B", "0987654321", "12 Trần Phú"):
        assert secret.encode() not in data and json.dumps(secret).strip('"').encode() not in data
    replay = _runtime(tmp_path, "replay", cassettes)
    assert asyncio.run(_other_upstreams(replay.client_factory, urls)) == live
    assert replay.client_factory.wrappers[-1].replayer.index.stats.misses == 0


# ----------------------------------------------------------------------------------------------------------------------
# Configuration errors


def test_bad_recording_settings_are_one_line_config_errors(tmp_path: Path) -> None:
    from adapters.http import ClientFactory

    base = ClientFactory()
    for section, message in (
        ({"mode": "sometimes"}, "[recording] mode: must be one of 'off', 'record' or 'replay'"),
        ({"mode": "replay", "faults": [{"kind": "explode"}]}, "[recording] faults[0].kind: must be one of 'delay'"),
        ({"mode": "record", "faults": [{"kind": "delay", "seconds": "soon"}]}, "[recording] faults[0].seconds:"),
        ({"mode": "record", "ignore_json_keys": "at"}, "[recording] ignore_json_keys: must be a list"),
    ):
        with pytest.raises(ConfigError) as caught:
            Settings.from_raw({"recording": section}, tmp_path)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    missing = Settings.from_raw({"recording": {"mode": "replay", "directory": "none"}}, tmp_path).recording
    with pytest.raises(ConfigError, match=r"^\[recording\] directory: .*none: no such cassette directory$"):
        client_factory_for(missing, base)
    assert client_factory_for(Settings.from_raw({}, tmp_path).recording, base) is base


def test_serve_refuses_a_bad_recording_section_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/g.db"\n[server]\nport = {port}\n'
        f'[recording]\nmode = "replay"\ndirectory = "{tmp_path / "missing"}"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "no such cassette directory" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


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
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode, result.stdout, result.stderr


def test_cassette_commands_from_the_cli(session_recorded: dict[str, Any], tmp_path: Path) -> None:
    cassettes = session_recorded["cassettes"]
    total = len(load_directory(cassettes))
    code, out, err = _cli("cassette", "show", str(cassettes), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == total and {r["upstream"] for r in rows} >= {"portal", f"agency:{SOAP_AGENCY}"}
    exported = tmp_path / "all.har"
    code, _, err = _cli("cassette", "export-har", str(cassettes), "--out", str(exported))
    assert code == 0, err
    assert len(load_har(exported)) == total
    imported = tmp_path / "imported"
    code, out, err = _cli("cassette", "import-har", str(exported), "--into", str(imported))
    assert code == 0 and f"{total} exchange(s) imported" in out, err
    code, out, err = _cli("cassette", "redact", str(imported))
    assert code == 0 and f"{total} exchange(s)" in out, err
    assert [e.url for e in load_directory(imported)] == [e.url for e in load_directory(cassettes)]
    vcr = tmp_path / "session.yaml"
    vcr.write_text(
        "interactions:\n- request: {method: GET, uri: 'http://a.example/x?phone=0912345678', body: null, headers: {}}\n"
        "  response: {status: {code: 200, message: OK}, headers: {}, body: {string: ok}}\nversion: 1\n",
        encoding="utf-8",
    )
    code, out, err = _cli("cassette", "import-vcr", str(vcr), "--into", str(imported))
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
        code, _, err = _cli(*argv)
        assert code == 2, (argv, err)
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
