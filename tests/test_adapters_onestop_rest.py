"""The reference REST contract client against the agency simulator, served by real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import ClientFactory, ClientSettings, bearer
from adapters.netguard import AddressPolicy
from adapters.onestop import Acknowledgement, AgencyStatus, DeliveryReceipt, OneStopClient, RestOneStopClient
from adapters.onestop.rest import RestMapping
from gateway.simulators.agency import AgencySimulator, create_app
from tests.servers import ServerThread

AGENCY = "000.00.23.H38"
TOKEN = "sim-agency-token"
LOCAL = AddressPolicy(allow_private=True)
MAPPING = {
    "paths": {
        "deliver": "/hoso",
        "status": "/hoso/{code}",
        "supplement": "/hoso/{code}/bosung",
        "withdraw": "/hoso/{code}/rut",
    },
    "fields": {"code": "MaHoSo", "procedure_code": "MaTTHC", "status": "TrangThai", "reason": "LyDo"},
    "statuses": {"1": "submitted", "4": "processing", "5": "supplement_requested", "7": "withdrawn"},
}


def dossier(code: str = f"{AGENCY}-261123-0001", **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "procedure_code": "1.009794",
        "agency_code": AGENCY,
        "applicant": {"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "fetch_url": "https://gw.example.vn/f/abc"}],
        "fees": [{"code": "LP1", "name": "Lệ phí cấp phép", "amount": 150000}],
        "due_at": datetime(2026, 12, 14, 10, 0, tzinfo=UTC),
        "originals_check_required": False,
        **extra,
    }


@pytest.fixture(scope="module")
def agency() -> Iterator[ServerThread]:
    with ServerThread(create_app(token=TOKEN)) as server:
        yield server


@pytest.fixture
def sim(agency: ServerThread) -> Iterator[AgencySimulator]:
    simulator: AgencySimulator = agency.server.config.app.state.simulator
    simulator.reset()
    yield simulator
    simulator.reset()


def client_settings(base_url: str, **overrides: Any) -> ClientSettings:
    return ClientSettings(base_url=base_url, address_policy=LOCAL, **{"timeout_seconds": 5, **overrides})


@pytest.fixture
async def rest(agency: ServerThread, sim: AgencySimulator) -> AsyncIterator[RestOneStopClient]:
    http = ClientFactory().client(f"agency:{AGENCY}", client_settings(agency.base_url), auth=bearer(TOKEN))
    async with http:
        yield RestOneStopClient(http, agency_code=AGENCY)


async def faults(base_url: str, **changes: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=5) as admin:
        response = await admin.post("/_sim/faults", json=changes)
        response.raise_for_status()


async def sim_state(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=5) as admin:
        return (await admin.get("/_sim/state")).json()


# ----------------------------------------------------------------------------------------------------------------------
# The contract
# ----------------------------------------------------------------------------------------------------------------------


async def test_the_client_implements_the_port(rest):
    assert isinstance(rest, OneStopClient)


async def test_deliver_is_accepted_once_even_when_repeated_with_the_same_key(rest, agency, sim):
    first = await rest.deliver(dossier(), "dossier-0001:deliver")
    assert isinstance(first, DeliveryReceipt)
    assert first.dossier_code == f"{AGENCY}-261123-0001"
    assert first.status_code == 201 and not first.duplicate
    assert first.status == "submitted" and first.agency_reference == "SIM-000001"
    assert first.received_at is not None and first.received_at.tzinfo is not None
    again = await rest.deliver(dossier(), "dossier-0001:deliver")
    assert again.duplicate and again.agency_reference == first.agency_reference
    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1}
    assert state["counters"]["replayed"] == 1
    received = state["dossiers"][first.dossier_code]["received"]
    assert received["due_at"] == "2026-12-14T10:00:00+00:00"  # datetimes go out as ISO 8601
    assert received["applicant"]["full_name"] == "Nguyễn Văn A"
    assert "Nguyễn" not in repr(first)  # the answer's body stays out of repr


async def test_a_dossier_the_agency_already_has_counts_as_accepted(rest, sim):
    await rest.deliver(dossier(), "key-1")
    again = await rest.deliver(dossier(), "key-2")  # another key: the agency answers 409
    assert again.duplicate and again.status_code == 409
    assert again.agency_reference == "SIM-000001"
    assert sim.effects["deliver"] == 1


async def test_concurrent_repeats_have_one_effect(rest, sim):
    receipts = await asyncio.gather(*(rest.deliver(dossier(), "same-key") for _ in range(10)))
    assert sum(not receipt.duplicate for receipt in receipts) == 1
    assert sim.effects["deliver"] == 1


async def test_a_lost_answer_is_retried_without_a_second_effect(rest, agency, sim):
    await faults(agency.base_url, lose_next=1)
    with pytest.raises(TransientError) as caught:
        await rest.deliver(dossier(), "dossier-0001:deliver")
    assert caught.value.status_code == 503
    assert sim.effects["deliver"] == 1  # it did happen
    receipt = await rest.deliver(dossier(), "dossier-0001:deliver")
    assert receipt.duplicate and receipt.status_code == 201
    assert sim.effects["deliver"] == 1


async def test_status(rest, agency, sim):
    code = (await rest.deliver(dossier(), "k")).dossier_code
    status = await rest.get_status(code)
    assert isinstance(status, AgencyStatus)
    assert status.dossier_code == code and status.status == "submitted" and status.at is not None
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False, timeout=5) as admin:
        await admin.post(
            f"/_sim/dossiers/{code}/events",
            json={"status": "received", "note": "Hồ sơ hợp lệ", "due_at": "2026-12-14T17:00:00"},
        )
    status = await rest.get_status(code)
    assert status.status == "received" and status.note == "Hồ sơ hợp lệ"
    # A timestamp without an offset is read in Vietnam's time.
    assert status.due_at == datetime(2026, 12, 14, 17, 0, tzinfo=timezone(timedelta(hours=7)))
    with pytest.raises(PermanentError) as caught:
        await rest.get_status(f"{AGENCY}-261123-9999")
    assert caught.value.status_code == 404


async def test_supplement(rest, agency, sim):
    code = (await rest.deliver(dossier(), "k")).dossier_code
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False, timeout=5) as admin:
        await admin.post(f"/_sim/dossiers/{code}/events", json={"status": "supplement_requested", "reason": "TP2"})
    components = [{"code": "TP2", "name": "Bản vẽ", "fetch_url": "https://gw.example.vn/f/def"}]
    ack = await rest.supplement(code, components, f"{code}:supplement:1")
    assert isinstance(ack, Acknowledgement)
    assert ack.status == "processing" and not ack.duplicate and ack.status_code == 200
    again = await rest.supplement(code, components, f"{code}:supplement:1")
    assert again.duplicate
    assert sim.effects["supplement"] == 1
    assert sim.dossiers[code]["supplements"] == [components]


async def test_withdraw(rest, sim):
    code = (await rest.deliver(dossier(), "k")).dossier_code
    ack = await rest.withdraw(code, "Người nộp rút hồ sơ", f"{code}:withdraw")
    assert ack.status == "withdrawn" and not ack.duplicate
    assert (await rest.withdraw(code, "Người nộp rút hồ sơ", f"{code}:withdraw")).duplicate
    assert sim.effects["withdraw"] == 1
    assert sim.dossiers[code]["withdraw_reason"] == "Người nộp rút hồ sơ"
    assert (await rest.get_status(code)).status == "withdrawn"


async def test_a_reused_key_with_another_request_is_refused(rest, sim):
    await rest.deliver(dossier(), "k")
    with pytest.raises(PermanentError) as caught:
        await rest.deliver(dossier(f"{AGENCY}-261123-0002"), "k")
    assert caught.value.status_code == 422
    assert sim.effects["deliver"] == 1


async def test_arguments_are_checked_before_anything_is_sent(rest, sim):
    with pytest.raises(ValueError, match="dossier code"):
        await rest.deliver({"procedure_code": "1.009794"}, "k")
    with pytest.raises(ValueError, match="idempotency key"):
        await rest.deliver(dossier(), "bad\nkey")
    assert sim.counters["requests"] == 0


# ----------------------------------------------------------------------------------------------------------------------
# Mapping
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mapped_agency() -> Iterator[ServerThread]:
    with ServerThread(create_app(mapping=MAPPING)) as server:
        yield server


async def test_mapping_renames_paths_fields_and_statuses(mapped_agency):
    sim: AgencySimulator = mapped_agency.server.config.app.state.simulator
    sim.reset()
    async with ClientFactory().client("agency:mapped", client_settings(mapped_agency.base_url)) as http:
        rest = RestOneStopClient(http, agency_code=AGENCY, mapping=MAPPING)
        receipt = await rest.deliver(dossier(), "k1")
        code = receipt.dossier_code
        assert receipt.status == "submitted" and receipt.body["code"] == code
        received = sim.dossiers[code]["received"]
        assert received["code"] == code and received["procedure_code"] == "1.009794"  # understood by the agency
        # On the wire, the agency's names and values:
        raw = (await http.get(f"/hoso/{code}")).json()
        assert raw["MaHoSo"] == code and raw["TrangThai"] == "1" and "code" not in raw
        assert (await rest.get_status(code)).status == "submitted"
        ack = await rest.withdraw(code, "Không có nhu cầu", "k2")
        assert ack.status == "withdrawn"
        assert sim.dossiers[code]["withdraw_reason"] == "Không có nhu cầu"
        assert sim.counters["requests"] == 4


def test_invalid_mappings_are_refused_with_a_clear_message():
    for mapping, message in (
        ({"path": {}}, "unknown keys"),
        ({"paths": {"send": "/x"}}, "unknown operation"),
        ({"paths": {"status": "/hoso"}}, "must contain {code}"),
        ({"paths": {"deliver": "hoso"}}, "starting with '/'"),
        ({"paths": {"status": "/hoso/{id}/{code}"}}, "only the {code} placeholder"),
        ({"fields": {"code": "Ma", "procedure_code": "Ma"}}, "same name"),
        ({"fields": {"code": 1}}, "non-empty strings"),
    ):
        with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
            RestMapping.parse(mapping)
    assert RestMapping.parse(None).path("status", "a/b c") == "/dossiers/a%2Fb%20c"


# ----------------------------------------------------------------------------------------------------------------------
# Failures
# ----------------------------------------------------------------------------------------------------------------------


async def test_503_is_transient_and_has_no_effect(rest, agency, sim):
    await faults(agency.base_url, fail_next=1)
    with pytest.raises(TransientError) as caught:
        await rest.deliver(dossier(), "k")
    assert caught.value.status_code == 503 and caught.value.retryable
    assert sim.effects["deliver"] == 0
    assert not (await rest.deliver(dossier(), "k")).duplicate


async def test_400_is_permanent(rest, sim):
    code = (await rest.deliver(dossier(), "k")).dossier_code
    with pytest.raises(PermanentError) as caught:
        await rest.supplement(code, [], "k-supplement")
    assert caught.value.status_code == 400 and not caught.value.retryable
    assert "components must be a non-empty list" in str(caught.value)


async def test_401_is_an_auth_error(agency, sim):
    for auth in (None, bearer("wrong-token")):
        async with ClientFactory().client("agency:x", client_settings(agency.base_url), auth=auth) as http:
            with pytest.raises(AuthError) as caught:
                await RestOneStopClient(http, agency_code=AGENCY).deliver(dossier(), "k")
        assert caught.value.status_code == 401
        assert "wrong-token" not in str(caught.value)
    assert sim.counters["unauthorized"] == 2 and sim.effects["deliver"] == 0


async def test_a_slow_answer_past_the_timeout_is_transient(agency, sim):
    await faults(agency.base_url, delay_seconds=3.0)
    started = time.monotonic()
    settings = client_settings(agency.base_url, timeout_seconds=0.3)
    async with ClientFactory().client("agency:x", settings, auth=bearer(TOKEN)) as http:
        with pytest.raises(TransientError, match="timed out"):
            await RestOneStopClient(http, agency_code=AGENCY).get_status("x")
    assert time.monotonic() - started < 2.5
    # The whole-exchange deadline also applies when per-operation timeouts are generous.
    settings = client_settings(agency.base_url, timeout_seconds=10, total_timeout_seconds=0.3)
    async with ClientFactory().client("agency:x", settings, auth=bearer(TOKEN)) as http:
        with pytest.raises(TransientError, match="timed out"):
            await RestOneStopClient(http, agency_code=AGENCY).get_status("x")


async def test_an_html_page_is_a_bad_response(rest, agency, sim):
    await faults(agency.base_url, html_next=2)
    with pytest.raises(BadResponseError, match="expected JSON, got text/html") as caught:
        await rest.deliver(dossier(), "k")
    assert "bảo trì" not in str(caught.value).lower()
    with pytest.raises(BadResponseError):
        await rest.get_status("x")
    assert sim.effects["deliver"] == 0


async def test_a_50_mb_answer_is_abandoned_without_reading_it_all(agency, sim):
    await faults(agency.base_url, oversize_next=1, oversize_bytes=50_000_000)
    settings = client_settings(agency.base_url, max_response_bytes=1024 * 1024)
    async with ClientFactory().client("agency:x", settings, auth=bearer(TOKEN)) as http:
        tracemalloc.start()
        try:
            with pytest.raises(BadResponseError, match="larger than the limit"):
                await RestOneStopClient(http, agency_code=AGENCY).get_status("x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 10_000_000  # the body was never held whole (the server's side is in this process too)
    await asyncio.sleep(0.2)  # let the server notice the client went away
    assert sim.bytes_streamed < 20_000_000  # the client stopped reading at the cap


async def test_a_declared_oversize_answer_is_refused_before_its_body_with_the_default_cap(rest, agency, sim):
    await faults(agency.base_url, oversize_next=1, oversize_bytes=60_000_000, oversize_declared=True)
    with pytest.raises(BadResponseError, match="60000000 bytes declared"):
        await rest.get_status("x")
    await asyncio.sleep(0.2)
    assert sim.bytes_streamed < 20_000_000


# ----------------------------------------------------------------------------------------------------------------------
# From a registration document
# ----------------------------------------------------------------------------------------------------------------------


async def test_client_from_a_registration_document(agency, sim, monkeypatch):
    resolved: list[str] = []

    def resolve(reference: str) -> str:
        resolved.append(reference)
        assert reference == "env:SXD_OUTBOUND_TOKEN"
        return TOKEN

    document = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": agency.base_url,
        "wsdl": None,
        "procedures": ["1.009794"],
        "auth": {"type": "bearer", "token": "env:SXD_OUTBOUND_TOKEN"},
        "status_updates": {"mode": "callback"},
        "mapping": None,
    }
    rest = RestOneStopClient.from_document(document, resolve_secret=resolve, address_policy=LOCAL)
    assert resolved == []
    async with rest:
        assert rest.upstream == f"agency:{AGENCY}"
        receipt = await rest.deliver(dossier(), "k")
        assert not receipt.duplicate
    assert resolved == ["env:SXD_OUTBOUND_TOKEN"]
    with pytest.raises(ValueError, match="not 'rest'"):
        RestOneStopClient.from_document({**document, "protocol": "soap"}, resolve_secret=resolve)
    # Without allow_private, a loopback endpoint is refused where the connection is made.
    async with RestOneStopClient.from_document(document, resolve_secret=resolve) as guarded:
        with pytest.raises(PermanentError, match="loopback"):
            await guarded.get_status("x")


# ----------------------------------------------------------------------------------------------------------------------
# Simulator controls and callbacks
# ----------------------------------------------------------------------------------------------------------------------


async def test_simulator_fault_controls_are_validated(agency, sim):
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False, timeout=5) as admin:
        assert (await admin.post("/_sim/faults", json={"explode": 1})).status_code == 400
        assert (await admin.post("/_sim/faults", json={"fail_next": -1})).status_code == 400
        assert (await admin.post("/_sim/faults", json={"fail_status": 200})).status_code == 400
        assert (await admin.post("/_sim/faults", json=[1])).status_code == 400
        assert (await admin.post("/_sim/faults", json={"fail_next": 2, "fail_status": 500})).json()["fail_next"] == 2
        assert (await admin.post("/_sim/faults", json={"reset": True})).json()["fail_next"] == 0
        assert (await admin.post("/_sim/reset")).json() == {"reset": True}
        missing_key = await admin.post("/dossiers", json={"code": "x"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert missing_key.status_code == 400


class CallbackReceiver:
    """A stand-in for the gateway's agency events endpoint."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []

        async def events(request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            self.received.append((request.url.path, request.headers.get("Authorization", ""), body))
            return JSONResponse({"accepted": True})

        self.app = Starlette(routes=[Route("/api/v1/agencies/{agency}/events", events, methods=["POST"])])


async def test_simulator_posts_status_events_to_the_gateway():
    receiver = CallbackReceiver()
    with ServerThread(receiver.app) as gateway:
        callback_url = f"{gateway.base_url}/api/v1/agencies/{AGENCY}/events"
        app = create_app(callback_url=callback_url, callback_token="cb-token")
        with ServerThread(app) as simulated:
            async with ClientFactory().client("agency:x", client_settings(simulated.base_url)) as http:
                code = (await RestOneStopClient(http, agency_code=AGENCY).deliver(dossier(), "k")).dossier_code
                answer = await http.post(
                    f"/_sim/dossiers/{code}/events",
                    json={"status": "completed", "note": "Đã có kết quả", "result": {"number": "123/GPXD"}},
                )
            assert answer.status_code == 200
            assert answer.json()["callback"]["status_code"] == 200
            state = await sim_state(simulated.base_url)
            assert state["effects"]["event"] == 1
            assert state["dossiers"][code]["status"] == "completed"
    [(path, authorization, body)] = receiver.received
    assert path == f"/api/v1/agencies/{AGENCY}/events"
    assert authorization == "Bearer cb-token"
    assert set(body) == {
        "dossier_code",
        "status",
        "at",
        "note",
        "reason",
        "due_at",
        "transfer_to",
        "result",
        "components",
    }
    assert body["dossier_code"] == code and body["status"] == "completed"
    assert body["result"] == {"number": "123/GPXD"} and body["note"] == "Đã có kết quả"
    assert datetime.fromisoformat(body["at"]).tzinfo is not None
