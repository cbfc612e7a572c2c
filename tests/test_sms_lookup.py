"""Lookup by SMS end to end: the gateway and the SMS gateway simulator on loopback servers. A citizen's ``TRACUU
<code>`` reaches the gateway signed, the reply (status, national label, due date; plain ASCII, one SMS, nothing
personal) goes back through the outbox; a forged text is refused (401) and queues nothing; replies are rate-limited
per number; the number is never logged in clear.

Every server binds 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from adapters.sms import SIGNATURE_HEADER, fit_sms, lookup_code, sign_body
from gateway.api import create_app
from gateway.bootstrap import Composition
from gateway.outbox import RetryPolicy
from gateway.runtime import Runtime
from gateway.services.sms_lookup import phone_key
from gateway.simulators.sms import SmsSimulator
from gateway.simulators.sms import create_app as create_sms
from gateway.store.models import OutboxMessage
from gateway.workers import OutboxWorker
from tests.api_support import NOW, Clock, open_runtime
from tests.fakes import APPLICANT, add_dossier
from tests.servers import ServerThread

SECRET = "SMS-TEST-SECRET"
CITIZEN = "0912345678"


@pytest.fixture(scope="module")
def sms_gateway() -> Iterator[tuple[str, SmsSimulator]]:
    app = create_sms(secret=SECRET)
    with ServerThread(app) as server:
        yield server.base_url, app.state.simulator


@dataclass
class Lookup:
    runtime: Runtime
    client: httpx.AsyncClient
    sim_url: str
    sim: SmsSimulator

    async def text(self, text: str, *, sender: str = CITIZEN, forge: bool = False) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.sim_url, trust_env=False, timeout=20) as phone:
            response = await phone.post("/_sim/inbound", json={"from": sender, "text": text, "forge": forge})
        assert response.status_code == 200, response.text
        return response.json()

    def queued(self) -> list[OutboxMessage]:
        with self.runtime.db.unit_of_work() as session:
            return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "sms.send")))

    async def drain(self, count: int) -> list[dict[str, Any]]:
        """Run the outbox through the real dispatcher until the simulator holds ``count`` texts."""
        dispatcher = Composition(self.runtime)
        worker = OutboxWorker(self.runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
        try:
            with anyio.fail_after(20):
                while len(self.sim.sent) < count:
                    await worker.run_once()
                    await asyncio.sleep(0.01)
        finally:
            await dispatcher.aclose()
        return self.sim.sent


@pytest.fixture
async def lookup(tmp_path: Path, sms_gateway: tuple[str, SmsSimulator]) -> AsyncIterator[Lookup]:
    sim_url, sim = sms_gateway
    sim.reset()
    sms = {"base_url": sim_url, "secret": SECRET, "replies_per_hour": 3, "timeout_seconds": 5}
    with open_runtime("sqlite", tmp_path, sms=sms) as runtime:
        with ServerThread(create_app(runtime, clock=Clock())) as server:
            sim.inbound_url = f"{server.base_url}/api/v1/sms/inbound"
            async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=20) as client:
                yield Lookup(runtime, client, sim_url, sim)
            sim.inbound_url = None


def test_lookup_command_and_plain_text() -> None:
    assert lookup_code("  tracuu   000.00.23.h38-261123-0001 ") == "000.00.23.H38-261123-0001"
    assert lookup_code("Tc 000.00.23.H38-261123-0001") == "000.00.23.H38-261123-0001"
    assert lookup_code("TRACUU") == ""
    assert lookup_code("xin chao") is None
    assert fit_sms("Đang giải quyết, hẹn trả") == "Dang giai quyet, hen tra"
    assert len(fit_sms("a " * 200)) == 160
    assert phone_key("+84912345678", SECRET) == phone_key("0912 345 678", SECRET) != phone_key("0912345678", "k")


async def test_tracuu_is_answered_with_status_label_and_due_date(
    lookup: Lookup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with lookup.runtime.db.unit_of_work() as session:
        dossier = add_dossier(session, at=NOW, statuses=("submitted", "received", "processing"))
        dossier.due_at = datetime(2026, 12, 14, 10, 0, tzinfo=UTC)  # 17:00 in Hà Nội
        code = dossier.code
    answer = await lookup.text(f"  tracuu   {code.lower()} ")
    assert answer["status_code"] == 200 and answer["answer"] == {"outcome": "found", "replied": True}
    unknown = await lookup.text("TC 000.00.23.H38-261123-9999", sender="0900000001")
    assert unknown["answer"]["outcome"] == "unknown"
    syntax = await lookup.text("xin chao", sender="0900000002")
    assert syntax["answer"]["outcome"] == "syntax"
    sent = await lookup.drain(3)
    reply = next(m for m in sent if m["to"] == CITIZEN)["text"]
    assert reply == f"HS {code}: Dang giai quyet (TT 4, processing). Hen tra: 14/12/2026."
    for message in sent:
        assert len(message["text"]) <= 160 and message["text"].isascii()
        assert not any(str(personal) in message["text"] for personal in APPLICANT.values())
    assert "Khong tim thay" in next(m for m in sent if m["to"] == "0900000001")["text"]
    assert "TRACUU <ma ho so>" in next(m for m in sent if m["to"] == "0900000002")["text"]
    leaked = [r.getMessage() for r in caplog.records if CITIZEN in r.getMessage() or CITIZEN in str(r.__dict__)]
    assert leaked == []
    assert any(getattr(r, "phone_hash", None) == phone_key(CITIZEN, SECRET) for r in caplog.records)


async def test_forged_text_is_refused_and_replies_are_rate_limited(lookup: Lookup) -> None:
    forged = await lookup.text("TRACUU 000.00.23.H38-261123-0001", forge=True)
    assert forged["status_code"] == 401
    assert forged["answer"]["error"]["code"]
    body = b'{"from": "0912345678", "text": "TC 000.00.23.H38-261123-0001"}'
    missing = await lookup.client.post("/api/v1/sms/inbound", content=body)
    assert missing.status_code == 401
    signed = await lookup.client.post(
        "/api/v1/sms/inbound", content=body + b" ", headers={SIGNATURE_HEADER: sign_body(body, SECRET)}
    )
    assert signed.status_code == 401
    assert lookup.queued() == []

    # Replies are rate-limited per number (3 an hour here); another number is not held back.
    outcomes = [(await lookup.text(f"TC 000.00.23.H38-261123-000{n}"))["answer"]["outcome"] for n in range(1, 6)]
    assert outcomes == ["unknown", "unknown", "unknown", "rate_limited", "rate_limited"]
    other = await lookup.text("TC 000.00.23.H38-261123-0001", sender="0900000003")
    assert other["answer"]["outcome"] == "unknown"
    assert len(lookup.queued()) == 4


async def test_inbound_texts_are_404_while_lookup_by_sms_is_off(tmp_path: Path) -> None:
    body = b'{"from": "0912345678", "text": "TC 000.00.23.H38-261123-0001", "received_at": null}'
    with open_runtime("sqlite", tmp_path) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            response = await client.post(
                "/api/v1/sms/inbound", content=body, headers={SIGNATURE_HEADER: sign_body(body, SECRET)}
            )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "lookup by SMS is not configured on this gateway"


async def test_the_reply_limit_holds_across_processes_sharing_the_database(lookup: Lookup) -> None:
    """Two gateway processes (two apps on one database, each with its own memory): the number's replies are counted
    in the outbox, so together they send at most ``replies_per_hour`` (3 here)."""

    async def direct(app: Any, n: int) -> str:
        body = f'{{"from": "{CITIZEN}", "text": "TC 000.00.23.H38-261123-000{n}", "received_at": null}}'.encode()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
            response = await client.post(
                "/api/v1/sms/inbound", content=body, headers={SIGNATURE_HEADER: sign_body(body, SECRET)}
            )
        assert response.status_code == 200, response.text
        return str(response.json()["outcome"])

    first, second = create_app(lookup.runtime, clock=Clock()), create_app(lookup.runtime, clock=Clock())
    outcomes = [await direct(app, n) for n, app in enumerate((first, second, first, second, first), start=1)]
    assert outcomes == ["unknown", "unknown", "unknown", "rate_limited", "rate_limited"]
    assert len(lookup.queued()) == 3
    restarted = create_app(lookup.runtime, clock=Clock())
    assert await direct(restarted, 6) == "rate_limited"
