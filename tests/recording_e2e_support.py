"""The recorded flow of the record/replay end-to-end tests: its upstreams, configuration and driver.

The flow is the demo's (``gateway/commands/demo.py``: its configuration, sample documents and applicants), run by
the daemon (API and outbox worker) on loopback with ``[recording]`` in record or replay mode.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.catalogue import import_procedures, load_catalogue
from gateway.commands.demo import DEMO_DATA as EXAMPLES
from gateway.commands.demo import SAMPLE_APPLICANTS, _config_text, _file, _submission
from gateway.daemon import listen_socket, run_daemon
from gateway.runtime import Runtime
from gateway.settings import Settings, load_settings

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


def _runtime(tmp_path: Path, mode: str, cassettes: Path, **recording: Any) -> Runtime:
    """A runtime without a database, its ``[recording]`` section as given."""
    settings = Settings.from_raw({"recording": {"mode": mode, "directory": str(cassettes), **recording}}, tmp_path)
    return Runtime.from_settings(settings, db=None)  # type: ignore[arg-type]
