"""The story that ``dvc-gateway demo`` tells: two sample dossiers taken through their journey on simulated upstreams.

Each step acts as the portal, the agency's clerk, the applicant or the postal service, waits until the gateway and the
national portal simulator hold the expected status, and reports it on the console. The sample documents, applicants
and submissions, and the waiting and checking helpers the walk-through shares, are defined here too. The sample
files (catalogue, signed documents, trust material) are package data in ``gateway/demo_data``, a copy of part of
``examples/`` that ``examples/generate.py`` keeps in step, so the demo runs from an installed wheel in any folder.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
from rich.status import Status

#: The folder of the demo's sample files: the ``gateway.demo_data`` package, installed with the gateway.
DEMO_DATA = Path(str(files("gateway.demo_data")))
#: The sample files the walk-through reads, relative to ``DEMO_DATA`` (and to ``examples/``, where they come from).
SAMPLE_FILES = (
    "procedures.json",
    "trust/root.pem",
    "trust/ca.pem",
    "trust/crls/ca.crl",
    "trust/crls/root.crl",
    "documents/don-de-nghi.pdf",
    "documents/anh-cccd.jpg",
    "documents/anh-cccd.jpg.p7s",
    "documents/to-khai.xml",
    "documents/ban-sao.pdf",
)
AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
#: The second agency and procedure: a business registration whose fees go through the national payment platform.
NATIONAL_AGENCY = "000.00.10.H38"
NATIONAL_PROCEDURE = "2.001610"
#: The applicant's phone that texts the lookup number.
SMS_PHONE = "0912345678"
#: Each wait (a delivery, a callback) within this many.
WAIT_SECONDS = 20.0

SAMPLE_APPLICANTS = (
    {"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
    {"kind": "citizen", "full_name": "Trần Thị B", "id_number": "001199054321", "phone": "0987654321"},
)


class DemoError(Exception):
    """The walk-through failed; the message is one line."""


def _file(name: str, code: str, *, signature: str | None = None) -> dict[str, Any]:
    """A dossier component ``code`` carrying the sample document ``name`` (and its detached ``signature`` file)."""
    documents = DEMO_DATA / "documents"
    item: dict[str, Any] = {
        "code": code,
        "filename": name,
        "content_base64": base64.b64encode((documents / name).read_bytes()).decode("ascii"),
    }
    if signature is not None:
        item["detached_signature_base64"] = base64.b64encode((documents / signature).read_bytes()).decode("ascii")
    return item


def _submission(components: list[dict[str, Any]], summary: str, applicant: dict[str, Any]) -> dict[str, Any]:
    return {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "channel": "online",
        "applicant": applicant,
        "summary": summary,
        "components": components,
        "fees": [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000}],
        "return_method": "post",
        "delivery_address": {"province": "Hà Tĩnh", "line": "Số 1, đường Mẫu"},
    }


async def _until(what: str, check: Callable[[], Awaitable[bool]], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def _expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        try:
            detail = response.json().get("message") or response.json().get("error") or ""
        except (ValueError, AttributeError):
            detail = ""
        raise DemoError(f"{what}: HTTP {response.status_code}{': ' + str(detail)[:200] if detail else ''}")
    body = response.json()
    if not isinstance(body, dict):
        raise DemoError(f"{what}: the answer is not a JSON object")
    return body


# ----------------------------------------------------------------------------------------------------------------------
# The actors and the checks the steps share


@dataclass
class _Walk:
    """The clients and credentials of the walk-through, its console status and report line, and shared checks."""

    clients: dict[str, httpx.AsyncClient]
    tokens: dict[str, str]
    status: Status
    done: Callable[[str], None]

    @property
    def gateway(self) -> httpx.AsyncClient:
        return self.clients["gateway"]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['admin']}"}

    @property
    def portal(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['portal']}"}

    async def read(self, code: str) -> dict[str, Any]:
        """The dossier as the portal API shows it."""
        return _expect(await self.gateway.get(f"/api/v1/dossiers/{code}", headers=self.portal), 200, f"reading {code}")

    async def national_code_of(self, code: str) -> int | None:
        """The status code the national portal simulator holds for the dossier, if it knows it."""
        response = await self.clients["national"].get(f"/_sim/dossiers/{code}")
        if response.status_code == 404:
            return None
        return int(_expect(response, 200, "the national portal's record")["TrangThaiHoSo"])

    async def agency_state(self) -> dict[str, Any]:
        """What the agency simulator has received, and how often it applied each effect."""
        return _expect(await self.clients["agency"].get("/_sim/state"), 200, "the simulator's state")

    async def step(self, code: str, what: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until the dossier is as ``wanted`` and the national portal holds its status; say so."""
        view: dict[str, Any] = {}

        async def reached() -> bool:
            nonlocal view
            view = await self.read(code)
            return wanted(view) and await self.national_code_of(code) == view["national_status_code"]

        try:
            await _until(f"{code}: {what}", reached)
        except DemoError as exc:
            held = await self.national_code_of(code)
            seen = f"status {view.get('status')}, shipments {view.get('shipments')}, national portal {held}"
            raise DemoError(f"{exc} (seen: {seen})") from None
        self.done(f"{code}: {what} (national portal: TrangThaiHoSo {view['national_status_code']}, as here)")
        return view

    async def clerk(self, code: str, event: dict[str, Any]) -> None:
        """The agency's clerk changes the dossier's status in the simulator, which posts the event to the gateway."""
        answer = await self.clients["agency"].post(f"/_sim/dossiers/{code}/events", json=event)
        body = _expect(answer, 200, f"{event['status']} event")
        callback = body.get("callback") or {}
        if callback.get("status_code") != 200 or callback.get("error"):
            raise DemoError(f"the agency's {event['status']} callback for {code} failed: {callback.get('error')}")


def _shipment(kind: str) -> Callable[[dict[str, Any]], bool]:
    """Whether the dossier has a postal order of ``kind`` with its order code."""
    return lambda view: any(s["kind"] == kind and s.get("order_code") for s in view.get("shipments") or [])


# ----------------------------------------------------------------------------------------------------------------------
# The steps


async def play_story(
    clients: dict[str, httpx.AsyncClient],
    tokens: dict[str, str],
    work: Path,
    sim_url: str,
    status: Status,
    done: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Take the signed and the unsigned dossier through their journeys; return both as the portal API shows them."""
    walk = _Walk(clients, tokens, status, done)
    await _register_agency(walk, work, sim_url)
    signed, unsigned = await _submit_dossiers(walk)
    await _wait_for_deliveries(walk, (signed, unsigned))
    await _wait_for_pickup(walk, unsigned)
    payment = await _receive_and_request_fee(walk, signed)
    await _pay_fee(walk, signed, payment)
    order = await _process_and_complete(walk, signed)
    await _deliver_result(walk, signed, order)
    await _lookup_by_sms(walk, signed)
    await _request_supplement(walk, unsigned)
    await _send_supplement(walk, unsigned)
    await _pay_through_national_platform(walk, work, sim_url)
    return await _read_journeys(walk, (signed, unsigned))


async def _register_agency(walk: _Walk, work: Path, sim_url: str) -> None:
    walk.status.update("Registering the simulated agency…")
    registration = {
        "code": AGENCY,
        "name": "Sở Xây dựng (mô phỏng)",
        "protocol": "rest",
        "endpoint": sim_url,
        "procedures": [PROCEDURE],
        "auth": {"type": "bearer", "token": f"file:{work / 'agency-outbound-token'}"},
        "status_updates": {"mode": "callback"},
    }
    answer = await walk.gateway.post("/api/v1/admin/agencies", json=registration, headers=walk.admin)
    _expect(answer, 201, "registration")
    walk.done(f"agency {AGENCY} registered through the admin API (REST, bearer token by file: reference)")


async def _submit_dossiers(walk: _Walk) -> tuple[str, str]:
    """Submit the signed and the unsigned dossier through the portal API; return their codes in that order."""
    walk.status.update("Submitting two dossiers through the portal API…")
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
    answers = await asyncio.gather(
        walk.gateway.post("/api/v1/dossiers", json=signed, headers={**walk.portal, "Idempotency-Key": "demo-signed"}),
        walk.gateway.post(
            "/api/v1/dossiers", json=unsigned, headers={**walk.portal, "Idempotency-Key": "demo-unsigned"}
        ),
    )
    first = _expect(answers[0], 201, "submitting the signed dossier")
    second = _expect(answers[1], 201, "submitting the unsigned dossier")
    walk.done(
        f"dossier {first['code']} submitted (all components signed: originals check "
        f"{'required' if first.get('originals_check_required') else 'not required'})"
    )
    walk.done(
        f"dossier {second['code']} submitted (unsigned scans: originals check "
        f"{'required' if second.get('originals_check_required') else 'not required'})"
    )
    return first["code"], second["code"]


async def _wait_for_deliveries(walk: _Walk, codes: tuple[str, str]) -> None:
    walk.status.update("Waiting for the outbox worker to deliver both dossiers to the agency…")

    async def delivered() -> bool:
        received = (await walk.agency_state())["dossiers"]
        return all(code in received for code in codes)

    await _until("the deliveries to the agency", delivered)
    walk.done("both dossiers delivered to the agency's one-stop system (idempotency keys: <code>:deliver:<agency>)")


async def _wait_for_pickup(walk: _Walk, code: str) -> None:
    walk.status.update("The postal service is asked to collect the unsigned dossier's originals…")
    await walk.step(code, "pickup of the paper originals ordered from the postal service", _shipment("pickup"))


async def _receive_and_request_fee(walk: _Walk, code: str) -> dict[str, Any]:
    """The agency receives the dossier and asks for its fee; return the payment the gateway created."""
    walk.status.update("The agency receives the signed dossier and asks for the fee…")
    await walk.clerk(code, {"status": "received", "note": "Hồ sơ đầy đủ, hợp lệ"})
    await walk.step(code, "received by the agency", lambda view: view["status"] == "received")
    await walk.clerk(code, {"status": "fee_requested", "note": "Đề nghị nộp lệ phí cấp phép"})
    view = await walk.step(
        code, "fee requested, payment created", lambda view: (view.get("payment") or {}).get("url") is not None
    )
    payment: dict[str, Any] = view["payment"]
    walk.done(
        f"{code}: the applicant is sent to the payment platform (reference {payment['reference']}, "
        f"{payment['amount']:,} VND)"
    )
    return payment


async def _pay_fee(walk: _Walk, code: str, payment: dict[str, Any]) -> None:
    walk.status.update("The applicant pays the fee online…")
    _expect(await walk.clients["payment"].post("/_sim/pay-url", json={"url": payment["url"]}), 200, "paying the fee")
    await walk.step(
        code,
        "fee paid (the platform's signed notification) → received again, the agency told",
        lambda view: view["status"] == "received" and all(fee["paid"] for fee in view["fees"]),
    )


async def _process_and_complete(walk: _Walk, code: str) -> str:
    """The agency processes and completes the dossier; return the code of the postal order delivering the result."""
    walk.status.update("The agency processes and completes the signed dossier…")
    await walk.clerk(code, {"status": "processing", "note": "Chuyển phòng chuyên môn thẩm định"})
    await walk.step(code, "processing", lambda view: view["status"] == "processing")
    await walk.clerk(code, {"status": "completed", "note": "Đã cấp giấy phép xây dựng"})
    view = await walk.step(code, "completed; result shipped by post", _shipment("delivery"))
    return str(next(s["order_code"] for s in view["shipments"] if s["kind"] == "delivery"))


async def _deliver_result(walk: _Walk, code: str, order: str) -> None:
    walk.status.update("The postal service delivers the result…")
    for _ in range(5):
        answer = await walk.clients["postal"].post(f"/_sim/orders/{order}/advance", json={})
        if answer.status_code != 200 or answer.json().get("status") == "delivered":
            break
    await walk.step(
        code,
        f"order {order} delivered (the postal service's signed tracking events) → returned",
        lambda view: view["status"] == "returned",
    )


async def _lookup_by_sms(walk: _Walk, code: str) -> None:
    """The applicant texts ``TRACUU <code>`` to the lookup number; the gateway's reply comes back through the SMS
    gateway."""
    walk.status.update("The applicant looks the dossier up by SMS…")
    sms = walk.clients["sms"]
    sent = _expect(await sms.post("/_sim/inbound", json={"from": SMS_PHONE, "text": f"TRACUU {code}"}), 200, "texting")
    if sent.get("status_code") != 200:
        raise DemoError(f"the gateway refused the inbound text: {sent.get('status_code')} {sent.get('error', '')}")
    replies: list[dict[str, Any]] = []

    async def answered() -> bool:
        nonlocal replies
        replies = (await sms.get("/_sim/messages", params={"to": SMS_PHONE})).json()
        return bool(replies)

    await _until("the SMS reply", answered)
    walk.done(f"SMS 'TRACUU {code}' answered: {replies[-1]['text']}")


async def _request_supplement(walk: _Walk, code: str) -> None:
    walk.status.update("The agency finds the unsigned dossier incomplete…")
    await walk.clerk(
        code,
        {
            "status": "supplement_requested",
            "reason": "Đơn đề nghị chưa được ký số",
            "components": ["TP1"],
            "note": "Bổ sung đơn đề nghị có chữ ký số",
        },
    )
    walk.done(f"{code}: supplement_requested (TP1: the application form must be signed)")


async def _send_supplement(walk: _Walk, code: str) -> None:
    walk.status.update("The applicant sends the signed form through the portal…")
    supplement = {"components": [_file("don-de-nghi.pdf", "TP1")], "note": "Đơn đề nghị đã ký số"}
    _expect(
        await walk.gateway.post(
            f"/api/v1/dossiers/{code}/supplements",
            json=supplement,
            headers={**walk.portal, "Idempotency-Key": "demo-supplement"},
        ),
        200,
        "the supplement",
    )

    async def supplemented() -> bool:
        record = (await walk.agency_state())["dossiers"].get(code) or {}
        return bool(record.get("supplements"))

    await _until("the supplement's delivery to the agency", supplemented)
    walk.done(f"{code}: supplement received by the gateway and delivered to the agency → received")


async def _pay_through_national_platform(walk: _Walk, work: Path, sim_url: str) -> None:
    """A business registration at a second agency, whose fees the national payment platform takes
    (``[payment] by_agency``): its clerk's events go straight to the gateway's agency API."""
    walk.status.update("A second agency's dossier pays through the national payment platform…")
    registration = {
        "code": NATIONAL_AGENCY,
        "name": "Sở Kế hoạch và Đầu tư (mô phỏng)",
        "protocol": "rest",
        "endpoint": sim_url,
        "procedures": [NATIONAL_PROCEDURE],
        "auth": {"type": "bearer", "token": f"file:{work / 'agency-outbound-token'}"},
        "status_updates": {"mode": "callback"},
    }
    _expect(await walk.gateway.post("/api/v1/admin/agencies", json=registration, headers=walk.admin), 201, "register")
    body = {
        **_submission(
            [_file("don-de-nghi.pdf", "TP1"), _file("ban-sao.pdf", "TP2")],
            "Đăng ký thành lập doanh nghiệp tư nhân",
            SAMPLE_APPLICANTS[1],
        ),
        "procedure_code": NATIONAL_PROCEDURE,
        "agency_code": NATIONAL_AGENCY,
        "fees": [
            {"code": "LP1", "name": "Lệ phí đăng ký doanh nghiệp", "amount": 50000},
            {"code": "P1", "name": "Phí công bố nội dung đăng ký doanh nghiệp", "amount": 100000},
        ],
        "return_method": "online",
    }
    headers = {**walk.portal, "Idempotency-Key": "demo-national"}
    code = str(_expect(await walk.gateway.post("/api/v1/dossiers", json=body, headers=headers), 201, "submit")["code"])
    clerk = {"Authorization": f"Bearer {walk.tokens['agency2']}"}
    for status in ("received", "fee_requested"):
        event = {"dossier_code": code, "status": status, "at": datetime.now(UTC).isoformat()}
        answer = await walk.gateway.post(f"/api/v1/agencies/{NATIONAL_AGENCY}/events", json=event, headers=clerk)
        _expect(answer, 200, f"the {status} event")
    view = await walk.step(
        code, "fee requested at the second agency", lambda v: bool((v.get("payment") or {}).get("url"))
    )
    payment = view["payment"]
    paid = _expect(
        await walk.clients["payment"].post("/national/_sim/pay-url", json={"url": payment["url"]}), 200, "pay"
    )
    codes = ", ".join(str((a.get("answer") or {}).get("MaLoi")) for a in paid.get("answers", [])) or "nothing"
    await walk.step(
        code,
        f"paid through the national payment platform ({payment['amount']:,} VND; the gateway answered MaLoi {codes})"
        " → received",
        lambda v: v["status"] == "received" and all(fee["paid"] for fee in v["fees"]),
    )


async def _read_journeys(walk: _Walk, codes: tuple[str, str]) -> list[dict[str, Any]]:
    walk.status.update("Reading the dossiers' journeys…")
    journeys = [await walk.read(code) for code in codes]
    effects = (await walk.agency_state())["effects"]
    walk.done(
        f"the agency saw {effects.get('deliver', 0)} deliveries and {effects.get('supplement', 0)} supplement: "
        "each exactly once"
    )
    return journeys
