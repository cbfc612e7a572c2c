"""Liên thông between two SOAP agencies, end to end on loopback: agency A (the reference SOAP service, reporting by
SOAP callback to the gateway's ``/soap/callback``) receives the dossier, processes it and transfers it to agency B
(the mapping variant's service, registered for polling); the gateway delivers to B; B processes and hands the
dossier back; A, the lead agency, completes it with the result. The dossier keeps its lead and its legal deadline,
B's share of the time is split as the procedure says, and the history shows the whole chain.

Also ``dvc-gateway agency register --no-check``: stored without reaching the endpoint, with a warning."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from gateway.api import create_app
from gateway.bootstrap import Composition
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar
from gateway.flows.agency import poll_due
from gateway.simulators.soap_agency import VARIANT_MAPPING, VARIANT_NAMESPACE, create_soap_app
from gateway.store.models import AgencyPoll, HistoryEntry, OutboxMessage
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY_TOKEN,
    Clock,
    Gateway,
    component,
    open_runtime,
    submission,
)
from tests.servers import ServerThread, admin_post
from tests.test_soap_end_to_end import cli, cli_config, deliver_all

LIEN_THONG = "9.000002"
#: A land procedure: the registration office (A) leads, the tax office (B) computes the financial obligation.
CATALOGUE = [
    {
        "code": LIEN_THONG,
        "name": "Đăng ký biến động đất đai (liên thông thuế, thử nghiệm)",
        "agencies": [AGENCY, AGENCY2],
        "processing_days": 10,
        "components": [{"code": "TP1", "name": "Đơn đăng ký biến động", "required": True, "must_be_signed": False}],
        "fees": [],
        "transfer_shares": {AGENCY: 2, AGENCY2: 1},
    }
]
CALENDAR = OfficeCalendar()
#: Wednesday 25 November 2026, 10:00 (Tuesday the 24th is a day off).
RECEPTION = datetime(2026, 11, 25, 10, 0, tzinfo=VIETNAM_TZ)
INTERVAL = 60


@contextmanager
def served_gateway(tmp_path: Path) -> Iterator[Gateway]:
    with open_runtime("sqlite", tmp_path, registry={"wsdl_cache_dir": "wsdl-cache"}) as runtime:
        with runtime.db.unit_of_work() as session:
            import_procedures(session, parse_catalogue(json.dumps(CATALOGUE, ensure_ascii=False), fmt="json"))
        clock = Clock()
        app = create_app(runtime, clock=clock)
        with ServerThread(app) as server:
            client = httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=60)
            yield Gateway(runtime=runtime, clock=clock, client=client, app=app)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with served_gateway(tmp_path) as gateway:
        async with gateway.client:
            yield gateway


def soap_registration(code: str, name: str, base_url: str, **changes: Any) -> dict[str, Any]:
    document = {
        "code": code,
        "name": name,
        "protocol": "soap",
        "wsdl": f"{base_url}/soap?wsdl",
        "procedures": [LIEN_THONG],
        "auth": {"type": "none"},
        "status_updates": {"mode": "callback"},
    }
    document.update(changes)
    return document


async def clerk(base_url: str, code: str, status: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return await admin_post(
        base_url, f"/_sim/dossiers/{code}/events", {"status": status, "at": at.isoformat(), **fields}
    )


async def test_a_dossier_transferred_between_two_soap_agencies_keeps_its_lead_and_deadline(gw: Gateway) -> None:
    base = str(gw.client.base_url).rstrip("/")
    with (
        ServerThread(create_soap_app(callback_url=f"{base}/soap/callback", callback_token=AGENCY_TOKEN)) as soap_a,
        ServerThread(create_soap_app(mapping_variant=True)) as soap_b,
    ):
        sim_a, sim_b = soap_a.app.state.simulator, soap_b.app.state.simulator
        # Both register through the API: their WSDLs are loaded and checked (B's through its mapping).
        documents = [
            soap_registration(AGENCY, "Văn phòng đăng ký đất đai", soap_a.base_url),
            soap_registration(
                AGENCY2,
                "Chi cục Thuế",
                soap_b.base_url,
                mapping=VARIANT_MAPPING,
                status_updates={"mode": "poll", "interval_seconds": INTERVAL},
            ),
        ]
        for document in documents:
            answer = await gw.client.post("/api/v1/admin/agencies?replace=true", json=document, headers=ADMIN)
            assert answer.status_code == 200, answer.text

        body = submission(procedure_code=LIEN_THONG, components=[component("TP1")], fees=None)
        code = (await gw.submitted(body))["code"]
        dispatcher = Composition(gw.runtime)
        try:
            await deliver_all(gw.runtime, dispatcher, lambda: code in sim_a.core.dossiers)

            # A receives the dossier: its clerk's event comes back by SOAP callback.
            gw.clock.set(RECEPTION)
            outcome = await clerk(soap_a.base_url, code, "received", RECEPTION, note="Hồ sơ đầy đủ")
            assert outcome["callback"]["status_code"] == 200, outcome
            view = await gw.get(code)
            legal_due = CALENDAR.due_at(RECEPTION, 10)
            assert view["status"] == "received" and view["due_at"] == legal_due.isoformat()

            # A processes, then hands the dossier to B (liên thông).
            transfer_at = RECEPTION + timedelta(days=1)  # Thursday 10:00
            gw.clock.set(transfer_at)
            outcome = await clerk(
                soap_a.base_url,
                code,
                "processing",
                transfer_at,
                transfer_to=AGENCY2,
                note="Chuyển Chi cục Thuế xác định nghĩa vụ tài chính",
            )
            assert outcome["callback"]["status_code"] == 200, outcome
            view = await gw.get(code)
            assert (view["agency_code"], view["lead_agency_code"]) == (AGENCY2, AGENCY)

            # The gateway delivers to B, in B's own names.
            await deliver_all(gw.runtime, dispatcher, lambda: code in sim_b.core.dossiers)
            assert VARIANT_NAMESPACE.encode() in sim_b.exchanges[-1][0]
            assert sim_b.core.dossiers[code]["received"]["procedure_code"] == LIEN_THONG

            # B reports by polling: its first poll is placed inside its interval.
            start = transfer_at + timedelta(minutes=1)
            assert await poll_due(dispatcher.poller, now=start) == 0
            with gw.db.unit_of_work() as session:
                due = session.get(AgencyPoll, AGENCY2).next_poll_at
            assessed_at = due + timedelta(seconds=30)
            await clerk(soap_b.base_url, code, "processing", assessed_at, note="Đã xác định nghĩa vụ tài chính")
            gw.clock.set(due + timedelta(seconds=INTERVAL))
            assert await poll_due(dispatcher.poller, now=gw.clock.now) == 1
            back_at = due + timedelta(seconds=90)
            await clerk(soap_b.base_url, code, "processing", back_at, transfer_to=AGENCY, note="Chuyển trả kết quả")
            gw.clock.set(due + timedelta(seconds=2 * INTERVAL))
            assert await poll_due(dispatcher.poller, now=gw.clock.now) == 1
            view = await gw.get(code)
            assert (view["agency_code"], view["lead_agency_code"]) == (AGENCY, AGENCY)

            # A, the lead, completes the dossier with its result (by SOAP callback).
            done_at = gw.clock.set(datetime(2026, 11, 26, 15, 0, tzinfo=VIETNAM_TZ))
            result = {"number": "456/GCN", "signed_at": done_at.isoformat(), "url": "https://motcua.example.vn/kq/456"}
            outcome = await clerk(soap_a.base_url, code, "completed", done_at, result=result, note="Đã cấp giấy")
            assert outcome["callback"]["status_code"] == 200, outcome

            # Nothing more is to be delivered: A already has the dossier (the hand-back is not a new delivery).
            with gw.db.unit_of_work() as session:
                deliveries = session.scalars(
                    select(OutboxMessage.target)
                    .where(OutboxMessage.kind == "agency.deliver")
                    .order_by(OutboxMessage.id)
                ).all()
                transfers = {
                    entry.details["transfer_to"]: entry.details["transfer_due_at"]
                    for entry in session.scalars(select(HistoryEntry).order_by(HistoryEntry.id))
                    if (entry.details or {}).get("transfer_to")
                }
        finally:
            await dispatcher.aclose()

        assert deliveries == [AGENCY, AGENCY2]
        assert sim_a.core.effects["deliver"] == 1 and sim_b.core.effects["deliver"] == 1
        view = await gw.get(code)
        assert view["status"] == "completed" and view["completed_at"] == done_at.isoformat()
        assert view["lead_agency_code"] == AGENCY and view["agency_code"] == AGENCY
        assert view["due_at"] == legal_due.isoformat() and view["overdue"] is False  # the legal deadline is kept
        assert view["result"]["number"] == "456/GCN"
        chain = [(item["status"], item["actor"], item["note"]) for item in view["history"] if "step" not in item]
        assert chain == [
            ("submitted", "portal", chain[0][2]),
            ("received", f"agency:{AGENCY}", "Hồ sơ đầy đủ"),
            ("processing", f"agency:{AGENCY}", "Chuyển Chi cục Thuế xác định nghĩa vụ tài chính"),
            ("processing", f"agency:{AGENCY2}", "Đã xác định nghĩa vụ tài chính"),
            ("processing", f"agency:{AGENCY2}", "Chuyển trả kết quả"),
            ("completed", f"agency:{AGENCY}", "Đã cấp giấy"),
        ]
        # B's share of the time left at the transfer: 1 part against the lead's 2 (the procedure's transfer_shares).
        remaining = CALENDAR.working_time_between(transfer_at, legal_due)
        share = datetime.fromisoformat(transfers[AGENCY2])
        assert abs(CALENDAR.working_time_between(transfer_at, share) - remaining / 3) <= timedelta(seconds=1)
        assert datetime.fromisoformat(transfers[AGENCY]) == legal_due  # back with the lead: the legal due date
        # Each agency's channel: A's events all came by SOAP callback, B's by polling.
        assert [c["status_code"] for c in sim_a.core.callbacks] == [200, 200, 200]
        assert sim_b.core.callbacks == []
        with gw.db.unit_of_work() as session:
            assert session.get(AgencyPoll, AGENCY2).position == back_at


async def test_register_no_check_stores_without_reaching_the_endpoint(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = cli_config(tmp_path, gw.runtime)
    file = tmp_path / "thue.json"
    # Nothing listens there yet: the agency's system is not up.
    document = soap_registration(AGENCY2, "Chi cục Thuế", "http://127.0.0.1:9", mapping=VARIANT_MAPPING)
    file.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    code, out, err = await cli(capsys, "agency", "register", "--file", str(file), "--replace", "--config", str(config))
    assert code == 2 and "registration refused" in err and len(err.strip().splitlines()) == 1

    code, out, err = await cli(
        capsys, "agency", "register", "--file", str(file), "--replace", "--no-check", "--config", str(config)
    )
    assert code == 0, err
    assert out.startswith(f"updated {AGENCY2} (Chi cục Thuế): soap")
    assert "warning" in err and "not loaded" in err and f"agency check {AGENCY2}" in err
    shown = await gw.client.get(f"/api/v1/admin/agencies/{AGENCY2}", headers=ADMIN)
    assert shown.json()["wsdl"] == "http://127.0.0.1:9/soap?wsdl"
    code, out, err = await cli(capsys, "agency", "check", AGENCY2, "--config", str(config))
    assert code == 1 and "check failed" in err

    # The static checks still apply with --no-check.
    file.write_text(json.dumps({**document, "wsdl": "ftp://127.0.0.1/x.wsdl"}), encoding="utf-8")
    code, out, err = await cli(
        capsys, "agency", "register", "--file", str(file), "--replace", "--no-check", "--config", str(config)
    )
    assert code == 2 and "scheme" in err
