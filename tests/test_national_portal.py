"""The national portal adapter against the simulated portal, served by real uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import ClientFactory, ClientSettings
from adapters.national_portal import (
    BatchResult,
    Channel,
    DossierRecord,
    NationalPortalClient,
    ProgressRecord,
    format_time,
    parse_time,
    procedure_from_wire,
    wire,
)
from adapters.netguard import AddressPolicy
from gateway.simulators.national_portal import DEFAULT_PROCEDURES, NationalPortalSimulator, create_app
from tests.servers import ServerThread, admin_post

USERNAME = "lgsp-h38"
PASSWORD = "mat-khau-bi-mat"
DSTCODE = "H38"
MADONVI = "000.00.00.H38"
LOCAL = AddressPolicy(allow_private=True)
RECEIVED = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 08:30 in Hà Nội


def dossier(n: int = 1, **overrides: Any) -> DossierRecord:
    fields: dict[str, Any] = {
        "code": f"000.00.23.H38-261123-{n:04d}",
        "procedure_code": "1.009794",
        "status_code": 2,
        "received_at": RECEIVED,
        "due_at": RECEIVED + timedelta(days=15),
        "channel": Channel.ONLINE,
        "procedure_name": "Cấp giấy phép xây dựng",
        "applicant_name": "Nguyễn Văn A",
        "phone": "0912345678",
    }
    fields.update(overrides)
    return DossierRecord(**fields)


def step(code: str, **overrides: Any) -> ProgressRecord:
    fields: dict[str, Any] = {
        "dossier_code": code,
        "at": RECEIVED + timedelta(hours=2),
        "content": "Chuyển chuyên viên thụ lý",
        "status_code": 4,
        "handler": "Trần Thị B",
        "department": "Phòng Quản lý xây dựng",
    }
    fields.update(overrides)
    return ProgressRecord(**fields)


@pytest.fixture(scope="module")
def portal() -> Iterator[ServerThread]:
    app = create_app(username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI, seed=7)
    with ServerThread(app) as server:
        yield server


@pytest.fixture
def sim(portal: ServerThread) -> Iterator[NationalPortalSimulator]:
    simulator: NationalPortalSimulator = portal.server.config.app.state.simulator
    simulator.reset()
    simulator.session_max_calls = None
    simulator.session_ttl_seconds = 1800.0
    simulator.error_rate = 0.0
    yield simulator
    simulator.reset()


@pytest.fixture
async def http(portal: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    settings = ClientSettings(base_url=portal.base_url, address_policy=LOCAL, timeout_seconds=5)
    async with ClientFactory().client("national_portal", settings) as client:
        yield client


@pytest.fixture
def national(http: httpx.AsyncClient, sim: NationalPortalSimulator) -> NationalPortalClient:
    return NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI)


def business_calls(sim: NationalPortalSimulator) -> list[dict[str, Any]]:
    return [call for call in sim.calls if call["service"] != wire.SERVICE_PROCEDURES]


# ----------------------------------------------------------------------------------------------------------------------
# The wire shape
# ----------------------------------------------------------------------------------------------------------------------


def test_times_are_yyyymmddhhmmss_in_ho_chi_minh_time() -> None:
    assert format_time(datetime(2026, 11, 23, 1, 30, 5, tzinfo=UTC)) == "20261123083005"
    # Past midnight in Vietnam while still the day before in UTC.
    assert format_time(datetime(2026, 11, 22, 20, 0, tzinfo=UTC)) == "20261123030000"
    # Any offset is converted.
    assert format_time(datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=9)))) == "20261123080000"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 11, 23, 8, 30))
    parsed = parse_time("20261123083005")
    assert parsed == datetime(2026, 11, 23, 1, 30, 5, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(hours=7)
    for bad in ("2026-11-23", "2026112308300", "20261323083000", "20261123083000Z"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_error_codes_are_normalised() -> None:
    assert wire.normalize_code(0) == "00"
    assert wire.normalize_code("0") == "00"
    assert wire.normalize_code("00") == "00"
    assert wire.normalize_code(4) == "04"
    assert wire.normalize_code(-1) == "-1"
    assert wire.normalize_code(None) is None
    assert wire.normalize_code(True) is None
    assert wire.is_session_code(wire.normalize_code(3)) and wire.is_session_code("04")
    assert wire.is_auth_code("01") and not wire.is_auth_code("00")


def test_dossier_record_wire_shape() -> None:
    record = dossier(returned_at=None, return_by_post=True, extra={"DanhSachLePhi": [{"MaPhiLePhi": "LP1"}]})
    body = record.to_wire()
    assert body["MaHoSo"] == "000.00.23.H38-261123-0001"
    assert body["MaTTHC"] == "1.009794"
    assert body["TrangThaiHoSo"] == 2
    assert body["KenhThucHien"] == 2
    assert body["NgayTiepNhan"] == "20261123083000"
    assert body["NgayHenTra"] == "20261208083000"
    assert body["HinhThuc"] == 1
    assert body["ChuHoSo"] == "Nguyễn Văn A"
    assert body["DanhSachLePhi"] == [{"MaPhiLePhi": "LP1"}]
    assert "NgayTra" not in body  # None values are left out
    json.dumps(body)  # JSON-ready
    assert "Nguyễn" not in repr(record) and "0912345678" not in repr(record)


def test_progress_record_wire_shape() -> None:
    body = step("X-1").to_wire()
    assert body == {
        "MaHoSo": "X-1",
        "NguoiXuLy": "Trần Thị B",
        "ThoiDiemXuLy": "20261123103000",
        "PhongBanXuLy": "Phòng Quản lý xây dựng",
        "NoiDungXuLy": "Chuyển chuyên viên thụ lý",
        "TrangThai": 4,
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {"code": ""},
        {"status_code": 0},
        {"status_code": True},
        {"status_code": "2"},
        {"channel": 4},
        {"received_at": datetime(2026, 11, 23, 8, 30)},
        {"due_at": "20261208083000"},
        {"extra": {"MaHoSo": "other"}},
    ],
)
def test_invalid_dossier_records_are_refused_before_sending(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dossier(**overrides).to_wire()


def test_record_outcomes_match_by_position_or_by_code() -> None:
    sent = [{"MaHoSo": "A"}, {"MaHoSo": "B"}, {"MaHoSo": "C"}]
    positional = {
        "error_code": "05",
        "result": [{"error_code": "00"}, {"error_code": "11", "message": "Thiếu MaTTHC"}, {"error_code": 0}],
    }
    assert wire.record_outcomes(positional, sent) == [None, ("11", "Thiếu MaTTHC"), None]
    only_failures = {"error_code": "05", "result": [{"MaHoSo": "C", "error_code": "12", "message": "sai"}]}
    assert wire.record_outcomes(only_failures, sent) == [None, None, ("12", "sai")]
    assert wire.record_outcomes({"error_code": 0}, sent) == [None, None, None]
    whole = {"error_code": "42", "message": "không xử lý"}
    assert wire.record_outcomes(whole, sent) == [("42", "không xử lý")] * 3


# ----------------------------------------------------------------------------------------------------------------------
# Against the simulator
# ----------------------------------------------------------------------------------------------------------------------


async def test_login_and_sync(national: NationalPortalClient, sim: NationalPortalSimulator) -> None:
    result = await national.sync_dossiers([dossier(1), dossier(2, status_code=1, channel=Channel.POST)], updating=False)
    assert isinstance(result, BatchResult)
    assert result.ok and result.calls == 1 and len(result.accepted) == 2
    stored = sim.dossiers["000.00.23.H38-261123-0001"]
    assert stored["TrangThaiHoSo"] == 2
    assert stored["record"]["NgayTiepNhan"] == "20261123083000"  # yyyyMMddHHmmss, Asia/Ho_Chi_Minh
    assert stored["record"]["NgayHenTra"] == "20261208083000"
    assert sim.dossiers["000.00.23.H38-261123-0002"]["record"]["KenhThucHien"] == 3
    # The session is cached: a second call does not log in again.
    await national.update_progress([step("000.00.23.H38-261123-0001")])
    assert national.login_count == 1 and sim.counters["logins"] == 1
    assert sim.dossiers["000.00.23.H38-261123-0001"]["TrangThaiHoSo"] == 4
    assert sim.dossiers["000.00.23.H38-261123-0001"]["progress"][0]["NoiDungXuLy"] == "Chuyển chuyên viên thụ lý"
    assert business_calls(sim)[0]["isUpdating"] is False


async def test_a_dossier_already_there_is_sent_with_is_updating(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await national.sync_dossiers([dossier(1)], updating=False)
    result = await national.sync_dossiers([dossier(1, status_code=9)], updating=True)
    assert result.ok and result.calls == 1
    stored = sim.dossiers["000.00.23.H38-261123-0001"]
    assert stored["TrangThaiHoSo"] == 9 and stored["updates"] == 1
    assert [c["isUpdating"] for c in business_calls(sim)] == [False, True]


async def test_a_known_dossier_sent_as_new_is_sent_again_as_an_update(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await national.sync_dossiers([dossier(1)], updating=False)
    result = await national.sync_dossiers([dossier(1, status_code=4), dossier(2)], updating=False)
    assert result.ok and len(result.accepted) == 2 and result.calls == 2
    calls = business_calls(sim)
    assert [c["isUpdating"] for c in calls] == [False, False, True]
    assert calls[2]["codes"] == ["000.00.23.H38-261123-0001"]  # only the refused one goes again
    assert sim.dossiers["000.00.23.H38-261123-0001"]["TrangThaiHoSo"] == 4
    # And an update of a dossier the portal does not have goes again as new.
    result = await national.sync_dossiers([dossier(3)], updating=True)
    assert result.ok and "000.00.23.H38-261123-0003" in sim.dossiers


async def test_twenty_five_records_go_in_three_calls(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    records = [dossier(n) for n in range(1, 26)]
    result = await national.sync_dossiers(records, updating=False)
    assert result.ok and result.calls == 3 and result.accepted == records
    calls = business_calls(sim)
    assert [len(c["codes"]) for c in calls] == [10, 10, 5]
    assert [code for c in calls for code in c["codes"]] == [r.code for r in records]
    assert len(sim.dossiers) == 25


async def test_batch_size_is_configurable(http: httpx.AsyncClient, sim: NationalPortalSimulator) -> None:
    client = NationalPortalClient(
        http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI, batch_size=4
    )
    result = await client.sync_dossiers([dossier(n) for n in range(1, 10)], updating=False)
    assert result.calls == 3
    assert [len(c["codes"]) for c in business_calls(sim)] == [4, 4, 1]
    with pytest.raises(ValueError):
        NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI, batch_size=0)


async def test_expired_session_mid_batch_is_refreshed_and_only_that_batch_retried(
    portal: ServerThread, national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await admin_post(portal.base_url, "/_sim/faults", {"session_max_calls": 2})
    records = [dossier(n) for n in range(1, 26)]
    result = await national.sync_dossiers(records, updating=False)
    assert result.ok and result.calls == 3 and len(result.accepted) == 25
    calls = business_calls(sim)
    assert [c["error_code"] for c in calls] == ["00", "00", wire.CODE_SESSION_EXPIRED, "00"]
    assert calls[3]["codes"] == calls[2]["codes"] == [r.code for r in records[20:]]
    assert national.login_count == 2 and sim.counters["logins"] == 2
    assert all(entry["updates"] == 0 for entry in sim.dossiers.values())  # every record stored exactly once


async def test_session_expired_by_the_portal_is_refreshed(
    portal: ServerThread, national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await national.sync_dossiers([dossier(1)], updating=False)
    await admin_post(portal.base_url, "/_sim/faults", {"expire_sessions": True})
    result = await national.update_progress([step(dossier(1).code)])
    assert result.ok and national.login_count == 2
    assert [c["error_code"] for c in business_calls(sim)] == ["00", wire.CODE_SESSION_INVALID, "00"]


async def test_session_time_to_live(national: NationalPortalClient, sim: NationalPortalSimulator) -> None:
    now = [1000.0]
    sim.clock = lambda: now[0]
    try:
        await national.sync_dossiers([dossier(1)], updating=False)
        now[0] += 1801
        result = await national.sync_dossiers([dossier(1, status_code=4)], updating=True)
    finally:
        sim.clock = time.monotonic
    assert result.ok and national.login_count == 2
    assert wire.CODE_SESSION_EXPIRED in [c["error_code"] for c in business_calls(sim)]


async def test_per_record_errors_and_retry_of_the_failed_records_only(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    records = [dossier(1), dossier(2, status_code=42), dossier(3), dossier(4, extra={"NgayTra": "2026-12-01"})]
    result = await national.sync_dossiers(records, updating=False)
    assert not result.ok and result.calls == 1
    assert [r.code for r in result.accepted] == [records[0].code, records[2].code]
    assert [(f.record.code, f.code) for f in result.failed] == [
        (records[1].code, wire.CODE_INVALID_VALUE),
        (records[3].code, wire.CODE_INVALID_VALUE),
    ]
    assert "TrangThaiHoSo" in result.failed[0].message and "NgayTra" in result.failed[1].message
    assert set(sim.dossiers) == {records[0].code, records[2].code}
    # The caller fixes and retries the failed records only.
    fixed = [dossier(2, status_code=2), dossier(4)]
    assert [f.record for f in result.failed] == result.failed_records
    retry = await national.sync_dossiers(fixed, updating=False)
    assert retry.ok
    assert business_calls(sim)[-1]["codes"] == [records[1].code, records[3].code]
    assert len(sim.dossiers) == 4


async def test_progress_for_an_unknown_dossier_is_refused_per_record(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await national.sync_dossiers([dossier(1)], updating=False)
    result = await national.update_progress([step(dossier(1).code), step("KHONG-CO"), step(dossier(1).code)])
    assert len(result.accepted) == 2
    assert [(f.record.dossier_code, f.code) for f in result.failed] == [("KHONG-CO", wire.CODE_NOT_FOUND)]
    assert len(sim.dossiers[dossier(1).code]["progress"]) == 2


async def test_server_errors_are_transient(
    portal: ServerThread, national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await admin_post(portal.base_url, "/_sim/faults", {"down_next": 1})
    with pytest.raises(TransientError) as caught:
        await national.sync_dossiers([dossier(1)], updating=False)  # the login fails
    assert caught.value.status_code == 503
    await national.login()
    await admin_post(portal.base_url, "/_sim/faults", {"down_next": 1, "down_status": 502})
    with pytest.raises(TransientError):
        await national.sync_dossiers([dossier(1)], updating=False)
    assert sim.dossiers == {}
    assert (await national.sync_dossiers([dossier(1)], updating=False)).ok  # it comes back


async def test_random_failures_are_seeded(portal: ServerThread, national: NationalPortalClient) -> None:
    await admin_post(portal.base_url, "/_sim/faults", {"error_rate": 1.0})
    with pytest.raises(TransientError):
        await national.pull_procedures()
    await admin_post(portal.base_url, "/_sim/faults", {"error_rate": 0.0})
    assert await national.pull_procedures()


async def test_wrong_credentials_are_an_auth_error(http: httpx.AsyncClient, sim: NationalPortalSimulator) -> None:
    wrong_password = NationalPortalClient(http, username=USERNAME, password="sai", dstcode=DSTCODE, madonvi=MADONVI)
    with pytest.raises(AuthError, match="login refused"):
        await wrong_password.sync_dossiers([dossier(1)], updating=False)
    wrong_province = NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode="H99", madonvi=MADONVI)
    with pytest.raises(AuthError):
        await wrong_province.login()
    wrong_unit = NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi="X")
    with pytest.raises(AuthError, match="account or unit"):
        await wrong_unit.sync_dossiers([dossier(1)], updating=False)
    assert sim.dossiers == {}


async def test_password_may_be_a_callable_and_is_never_shown(
    http: httpx.AsyncClient, sim: NationalPortalSimulator
) -> None:
    client = NationalPortalClient(http, username=USERNAME, password=lambda: PASSWORD, dstcode=DSTCODE, madonvi=MADONVI)
    await client.login()
    text = repr(client)
    assert PASSWORD not in text and "***" in text
    assert all(token not in text for token in sim.sessions)


async def test_pull_procedures(national: NationalPortalClient) -> None:
    procedures = await national.pull_procedures()
    assert [p["MATTHC"] for p in procedures] == [p["MATTHC"] for p in DEFAULT_PROCEDURES]


def test_catalogue_entries_are_read_from_the_portal_shape() -> None:
    building = procedure_from_wire(DEFAULT_PROCEDURES[0])
    assert (building.code, building.active, building.agencies, building.processing_days) == (
        "1.009794",
        True,
        ("000.00.23.H38",),
        15,
    )
    assert building.fees == ({"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000},)
    assert [c["code"] for c in building.components] == ["TP1", "TP2"] and building.field_code == "G09-XD05"
    sparse = procedure_from_wire(
        {
            "MATTHC": "2.000001",
            "TENTTHC": "Thủ tục cũ",
            "TRANGTHAI": "0",
            "CACHTHUCTHUCHIEN": [
                {"THOIGIAN": [{"THOIGIANGIAIQUYET": "10"}, {"THOIGIANGIAIQUYET": "7", "PHILEPHI": [
                    {"MAPHILEPHI": "P1", "SOTIEN": "1.500.000"},
                    {"MAPHILEPHI": "P2", "SOTIEN": 2.5},  # a float is never read as money
                ]}]}
            ],
        }
    )  # fmt: skip
    assert not sparse.active and sparse.agencies == () and sparse.processing_days == 7
    assert sparse.fees == ({"code": "P1", "name": "P1", "amount": 1500000},)
    with pytest.raises(ValueError, match="MATTHC"):
        procedure_from_wire({"TENTTHC": "Không có mã"})


async def test_lookup_gives_the_status_the_portal_holds(
    national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    national.batch_size = 2
    await national.sync_dossiers([dossier(1), dossier(2, status_code=4)], updating=False)
    held = await national.lookup_dossiers([dossier(1).code, dossier(2).code, "KHONG-CO", dossier(1).code])
    assert held == {dossier(1).code: 2, dossier(2).code: 4, "KHONG-CO": None}
    assert sim.counters["lookups"] == 2  # three codes, batches of two
    with pytest.raises(ValueError):
        await national.lookup_dossiers([""])


async def test_simulated_per_record_refusals_and_what_the_portal_holds(
    portal: ServerThread, national: NationalPortalClient, sim: NationalPortalSimulator
) -> None:
    await admin_post(portal.base_url, "/_sim/faults", {"refuse_next_records": 1, "refuse_service": wire.SERVICE_SYNC})
    result = await national.sync_dossiers([dossier(1), dossier(2)], updating=False)
    assert [(f.record.code, f.code) for f in result.failed] == [(dossier(1).code, wire.CODE_SYSTEM_ERROR)]
    assert [r.code for r in result.accepted] == [dossier(2).code]
    again = await national.sync_dossiers(result.failed_records, updating=False)
    assert again.ok
    await national.update_progress([step(dossier(1).code)])
    async with httpx.AsyncClient(base_url=portal.base_url, trust_env=False, timeout=5) as admin:
        held = (await admin.get(f"/_sim/dossiers/{dossier(1).code}")).json()
        missing = await admin.get("/_sim/dossiers/KHONG-CO")
    assert held["TrangThaiHoSo"] == 4 and held["record"]["MaHoSo"] == dossier(1).code and len(held["progress"]) == 1
    assert missing.status_code == 404
    with pytest.raises(httpx.HTTPStatusError):
        await admin_post(portal.base_url, "/_sim/faults", {"refuse_service": "LayDanhSachTTHC"})


async def test_records_must_be_the_dataclasses(national: NationalPortalClient) -> None:
    with pytest.raises(TypeError):
        await national.sync_dossiers([dossier(1).to_wire()], updating=False)  # type: ignore[list-item]


# ----------------------------------------------------------------------------------------------------------------------
# Answers the simulator does not give
# ----------------------------------------------------------------------------------------------------------------------


def scripted(answers: list[httpx.Response]) -> tuple[NationalPortalClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    http = httpx.AsyncClient(base_url="https://dvc.example.vn/api", transport=httpx.MockTransport(handler))
    client = NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI)
    return client, seen


def ok_login(token: str = "s1") -> httpx.Response:
    return httpx.Response(200, json={"error_code": "00", "session": token})


async def test_http_401_refreshes_the_session_once() -> None:
    client, seen = scripted(
        [ok_login("s1"), httpx.Response(401), ok_login("s2"), httpx.Response(200, json={"error_code": 0})]
    )
    result = await client.sync_dossiers([dossier(1)], updating=False)
    assert result.ok
    bodies = [json.loads(request.content) for request in seen]
    assert bodies[0] == {"username": USERNAME, "password": PASSWORD}
    assert bodies[1]["session"] == "s1" and bodies[3]["session"] == "s2"
    assert all(request.headers["dstcode"] == DSTCODE for request in seen)
    assert [request.url.path for request in seen] == ["/api/login", "/api/service", "/api/login", "/api/service"]
    assert bodies[3] == {
        "session": "s2",
        "madonvi": MADONVI,
        "service": "DongBoHoSoMC",
        "isUpdating": False,
        "data": [dossier(1).to_wire()],
    }


async def test_a_fresh_session_refused_again_is_an_auth_error() -> None:
    expired = httpx.Response(200, json={"error_code": "04", "message": "hết hạn"})
    client, _ = scripted([ok_login("s1"), expired, ok_login("s2"), expired])
    with pytest.raises(AuthError, match="fresh session"):
        await client.update_progress([step("A")])


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(200, text="<html>bảo trì</html>", headers={"Content-Type": "text/html"}), BadResponseError),
        (httpx.Response(200, json=["not", "an", "object"]), BadResponseError),
        (httpx.Response(200, json={"message": "no code"}), BadResponseError),
        (httpx.Response(200, json={"error_code": "99"}), TransientError),
        (httpx.Response(200, json={"error_code": "06"}), PermanentError),
        (httpx.Response(400, json={"error_code": "06"}), PermanentError),
        (httpx.Response(403), AuthError),
        (httpx.Response(504), TransientError),
    ],
)
async def test_unwelcome_answers_are_mapped(answer: httpx.Response, error: type[Exception]) -> None:
    client, _ = scripted([ok_login(), answer])
    with pytest.raises(error):
        await client.sync_dossiers([dossier(1)], updating=False)


async def test_login_answer_without_session_is_a_bad_response() -> None:
    client, _ = scripted([httpx.Response(200, json={"error_code": 0})])
    with pytest.raises(BadResponseError):
        await client.login()


async def test_network_failure_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(base_url="https://dvc.example.vn", transport=httpx.MockTransport(handler))
    client = NationalPortalClient(http, username=USERNAME, password=PASSWORD, dstcode=DSTCODE, madonvi=MADONVI)
    with pytest.raises(TransientError):
        await client.login()
