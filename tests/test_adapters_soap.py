"""The SOAP one-stop client (zeep over the factory's httpx client) against the SOAP simulator, over real loopback.

Robustness and the offline WSDL cache are in ``tests/test_adapters_soap_robustness.py``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from zeep.wsdl.messages.soap import SoapMessage

from adapters.errors import AuthError, BadResponseError
from adapters.http import ClientFactory
from adapters.onestop import OneStopClient
from adapters.onestop.soap import (
    SoapFaultError,
    SoapMapping,
    SoapOneStopClient,
    WsdlError,
    WsdlLoader,
    dossier_to_hoso,
)
from gateway.simulators.soap_agency import VARIANT_MAPPING, SoapAgencySimulator, create_soap_app
from tests.adapters_soap_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.adapters_soap_support import (
    CODE,
    LOCAL,
    TOKEN,
    assert_requests_valid,
    client_settings,
    soap_client,
    version_mapping,
)
from tests.servers import ServerThread
from tests.soap_support import AGENCY, dossier, faults, sim_state

# ----------------------------------------------------------------------------------------------------------------------
# The reference service
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
async def test_deliver_status_supplement_withdraw(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread, version: str
) -> None:
    client = soap_client(http, agency.base_url, mapping=version_mapping(version))
    assert isinstance(client, OneStopClient)
    receipt = await client.deliver(dossier(), f"{CODE}:deliver")
    assert client.soap_version == version and client.address == f"{agency.base_url}/soap"
    assert receipt.dossier_code == CODE and not receipt.duplicate
    assert receipt.agency_reference == "SIM-000001" and receipt.status == "submitted"
    assert receipt.received_at is not None and receipt.received_at.utcoffset() is not None
    received = sim.core.dossiers[CODE]["received"]
    assert received["procedure_code"] == "1.009794" and received["applicant"]["full_name"] == "Nguyễn Văn A"
    assert received["components"][0]["fetch_url"] == "https://lgsp.example.gov.vn/files/9f2c"
    assert received["components"][1]["content_base64"] == "JVBERi0xLjcK"
    assert received["fees"] == [{"code": "LP1", "name": "Lệ phí cấp phép", "amount": 150000}]
    assert datetime.fromisoformat(received["received_at"]) == datetime.fromisoformat("2026-11-23T08:05:00+07:00")

    status = await client.get_status(CODE)
    assert status.status == "submitted" and status.at is not None

    event = {"status": "supplement_requested", "reason": "Thiếu bản vẽ", "due_at": "2026-12-20T17:00:00+07:00"}
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False) as admin:
        await admin.post(f"/_sim/dossiers/{CODE}/events", json=event)
    status = await client.get_status(CODE)
    assert (status.status, status.reason) == ("supplement_requested", "Thiếu bản vẽ")
    assert status.due_at == datetime.fromisoformat("2026-12-20T17:00:00+07:00")

    component = {"code": "TP2", "name": "Bản vẽ", "content_base64": "JVBERi0xLjcK", "sha256": "51ab" * 16}
    ack = await client.supplement(CODE, [component], f"{CODE}:supplement:1")
    assert ack.status == "processing" and not ack.duplicate
    ack = await client.withdraw(CODE, "Người nộp không còn nhu cầu", f"{CODE}:withdraw")
    assert ack.status == "withdrawn"
    assert sim.core.dossiers[CODE]["withdraw_reason"] == "Người nộp không còn nhu cầu"

    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1, "event": 1, "supplement": 1, "withdraw": 1}
    assert assert_requests_valid(sim, version=version) == 5


async def test_repeated_key_has_no_second_effect(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url)
    first = await client.deliver(dossier(), f"{CODE}:deliver")
    again = await client.deliver(dossier(), f"{CODE}:deliver")
    assert not first.duplicate and again.duplicate
    assert again.agency_reference == first.agency_reference
    other_key = await client.deliver(dossier(), f"{CODE}:deliver:retry")  # the agency answers DA_TON_TAI
    assert other_key.duplicate and other_key.dossier_code == CODE
    await client.withdraw(CODE, "x", f"{CODE}:withdraw")
    assert (await client.withdraw(CODE, "x", f"{CODE}:withdraw")).duplicate
    state = await sim_state(agency.base_url)
    assert state["effects"] == {"deliver": 1, "withdraw": 1}
    assert state["counters"]["replayed"] == 2


async def test_lost_answer_then_retry_is_exactly_once(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url)
    await faults(agency.base_url, truncate_next=1)
    with pytest.raises(BadResponseError) as caught:
        await client.deliver(dossier(), f"{CODE}:deliver")
    assert caught.value.retryable and "not well-formed XML" in str(caught.value)
    retried = await client.deliver(dossier(), f"{CODE}:deliver")
    assert retried.duplicate
    assert (await sim_state(agency.base_url))["effects"] == {"deliver": 1}


async def test_wsdl_is_loaded_once_per_url(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    loader = WsdlLoader()
    first = soap_client(http, agency.base_url, wsdl_loader=loader)
    second = soap_client(http, agency.base_url, wsdl_loader=loader)
    codes = [f"{AGENCY}-261123-{n:04d}" for n in range(1, 6)]
    await asyncio.gather(*(first.deliver(dossier(code), f"{code}:deliver") for code in codes))  # concurrent first use
    await asyncio.gather(*(second.get_status(code) for code in codes))
    counters = (await sim_state(agency.base_url))["counters"]
    assert counters["wsdl_fetches"] == 1 and counters["xsd_fetches"] == 1
    assert counters["requests"] == 10
    stats = loader.stats()
    assert stats["fetched"] == 1 and stats["hits"] >= 1
    assert len(loader) == 1 and second.wsdl_loader is loader
    loader.clear()
    assert len(loader) == 0 and loader.stats() == {}


async def test_a_client_without_a_loader_keeps_its_own(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    first, second = soap_client(http, agency.base_url), soap_client(http, agency.base_url)
    assert first.wsdl_loader is not second.wsdl_loader
    await first.load()
    await first.load()
    await second.load()
    counters = (await sim_state(agency.base_url))["counters"]
    assert counters["wsdl_fetches"] == 2 and counters["xsd_fetches"] == 2
    assert first.wsdl_loader.stats() == second.wsdl_loader.stats() == {"fetched": 1}
    assert first.wsdl_loader.reference_document() is first.wsdl_loader.reference_document()


async def test_concurrent_calls_keep_their_own_answers(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url)
    codes = [f"{AGENCY}-261123-{n:04d}" for n in range(1, 9)]
    await asyncio.gather(*(client.deliver(dossier(code), f"{code}:deliver") for code in codes))
    await faults(agency.base_url, fail_next=1, fail_code="HO_SO_KHONG_HOP_LE")
    answers = await asyncio.gather(*(client.get_status(code) for code in codes), return_exceptions=True)
    refused = [answer for answer in answers if isinstance(answer, SoapFaultError)]
    assert len(refused) == 1 and refused[0].business_code == "HO_SO_KHONG_HOP_LE"
    assert refused[0].status_code == 500  # SOAP 1.1 faults come with 500; every other call saw 200
    found = [answer.dossier_code for answer in answers if not isinstance(answer, BaseException)]
    assert len(found) == len(codes) - 1 and set(found) <= set(codes)


async def test_changes_since_and_results(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url, mapping=version_mapping("1.2"))
    for code in (CODE, f"{AGENCY}-261123-0002"):
        await client.deliver(dossier(code), f"{code}:deliver")
    event = {
        "status": "completed",
        "at": "2030-01-02T09:00:00+07:00",
        "note": "Đã có kết quả",
        "result": {"number": "123/GPXD", "signed_at": "2030-01-02T08:00:00+07:00", "url": "https://x.vn/kq.pdf"},
    }
    async with httpx.AsyncClient(base_url=agency.base_url, trust_env=False) as admin:
        await admin.post(f"/_sim/dossiers/{CODE}/events", json=event)
    changes = await client.changes_since(datetime(2029, 12, 31, tzinfo=UTC))
    assert [(change.dossier_code, change.status) for change in changes] == [(CODE, "completed")]
    assert changes[0].result == {
        "number": "123/GPXD",
        "signed_at": "2030-01-02T08:00:00+07:00",
        "url": "https://x.vn/kq.pdf",
    }
    assert changes[0].note == "Đã có kết quả"
    assert len(await client.changes_since(datetime(2020, 1, 1, tzinfo=UTC))) == 2
    assert_requests_valid(sim, version="1.2")


async def test_endpoint_overrides_the_wsdl_address(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    with ServerThread(create_soap_app(token=TOKEN)) as other:
        client = soap_client(http, agency.base_url, endpoint=f"{other.base_url}/soap")
        await client.deliver(dossier(), f"{CODE}:deliver")
        assert client.address == f"{other.base_url}/soap"
        assert CODE in other.app.state.simulator.core.dossiers
        assert sim.core.dossiers == {}


# ----------------------------------------------------------------------------------------------------------------------
# A differently described service, reached through a mapping
# ----------------------------------------------------------------------------------------------------------------------


async def test_mapping_variant(variant: ServerThread) -> None:
    simulator: SoapAgencySimulator = variant.app.state.simulator
    simulator.reset()
    async with ClientFactory().client("agency:variant", client_settings(variant.base_url)) as http:
        unmapped = soap_client(http, variant.base_url)
        with pytest.raises(WsdlError, match=r"no operation TiepNhanHoSo \(deliver\)"):
            await unmapped.deliver(dossier(), f"{CODE}:deliver")

        client = soap_client(http, variant.base_url, mapping=VARIANT_MAPPING)
        receipt = await client.deliver(dossier(), f"{CODE}:deliver")
        assert receipt.status == "submitted"  # the agency answered "1"
        assert (await client.deliver(dossier(), f"{CODE}:deliver")).duplicate
        assert (await client.get_status(CODE)).status == "submitted"
        ack = await client.supplement(CODE, [{"code": "TP3", "fetch_url": "https://x.vn/3"}], f"{CODE}:s1")
        assert ack.dossier_code == CODE
        assert (await client.withdraw(CODE, "x", f"{CODE}:withdraw")).status == "withdrawn"
        with pytest.raises(SoapFaultError) as caught:
            await client.get_status(f"{AGENCY}-261123-0404")
        assert caught.value.business_code == "KHONG_TIM_THAY"  # read from ThongBaoLoi/MaSoLoi through the mapping
    assert simulator.core.effects == {"deliver": 1, "supplement": 1, "withdraw": 1}
    assert assert_requests_valid(simulator, mapping_variant=True) == 6
    simulator.reset()


async def test_the_agency_deadline_and_payment_status_go_where_the_schema_has_them(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread, variant: ServerThread
) -> None:
    extra = {"agency_due_at": "2026-12-02T14:00:00+07:00", "payment": {"status": "unpaid", "unpaid_amount": 150000}}
    hoso = dossier_to_hoso(dossier(**extra))
    assert hoso["HanXuLyCoQuan"] == datetime.fromisoformat("2026-12-02T14:00:00+07:00")
    assert hoso["TrangThaiThanhToan"] == "unpaid"
    assert "HanXuLyCoQuan" not in dossier_to_hoso(dossier())  # optional: left out when unknown
    await soap_client(http, agency.base_url).deliver(dossier(**extra), f"{CODE}:deliver")
    received = sim.core.dossiers[CODE]["received"]
    assert datetime.fromisoformat(received["agency_due_at"]) == hoso["HanXuLyCoQuan"]
    assert received["payment"] == {"status": "unpaid"} and received["due_at"] is not None
    assert assert_requests_valid(sim) == 1
    simulator: SoapAgencySimulator = variant.app.state.simulator
    simulator.reset()
    async with ClientFactory().client("agency:variant", client_settings(variant.base_url)) as plain:
        receipt = await soap_client(plain, variant.base_url, mapping=VARIANT_MAPPING).deliver(
            dossier(**extra), f"{CODE}:deliver"
        )
    assert receipt.status == "submitted"  # a schema without the new elements is not sent them
    assert assert_requests_valid(simulator, mapping_variant=True) == 1
    simulator.reset()


# ----------------------------------------------------------------------------------------------------------------------
# Registration documents, WS-Security, input checks
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("digest", [False, True])
async def test_ws_security_username_token(digest: bool) -> None:
    secrets = {"env:SXD_WSSE": "mat-khau", "env:WRONG": "sai"}
    with ServerThread(create_soap_app(wsse=("canbo", "mat-khau"))) as server:
        document = {
            "code": AGENCY,
            "protocol": "soap",
            "wsdl": f"{server.base_url}/soap?wsdl",
            "endpoint": None,
            "auth": {"type": "wsse", "username": "canbo", "password": "env:SXD_WSSE", "digest": digest},
            "mapping": {"soap_version": "1.2"},
        }
        async with SoapOneStopClient.from_document(
            document, resolve_secret=secrets.__getitem__, address_policy=LOCAL
        ) as client:
            assert "mat-khau" not in repr(client._wsse)
            assert (await client.deliver(dossier(), f"{CODE}:deliver")).dossier_code == CODE
        request = server.app.state.simulator.exchanges[-1][0]
        assert b"UsernameToken" in request and (b"PasswordDigest" in request) is digest
        wrong = {**document, "auth": {**document["auth"], "password": "env:WRONG"}}
        async with SoapOneStopClient.from_document(
            wrong, resolve_secret=secrets.__getitem__, address_policy=LOCAL
        ) as c:
            with pytest.raises(AuthError, match="WS-Security credentials refused"):
                await c.get_status(CODE)


def test_from_document_checks() -> None:
    secrets: dict[str, str] = {}
    base = {"code": AGENCY, "protocol": "soap", "wsdl": "https://motcua.example.vn/soap?wsdl"}
    with pytest.raises(ValueError, match="protocol is not 'soap'"):
        SoapOneStopClient.from_document({**base, "protocol": "rest"}, resolve_secret=secrets.__getitem__)
    with pytest.raises(ValueError, match="wsdl is required"):
        SoapOneStopClient.from_document({**base, "wsdl": None}, resolve_secret=secrets.__getitem__)
    with pytest.raises(ValueError, match="unknown operation 'nop'"):
        SoapOneStopClient.from_document(
            {**base, "mapping": {"operations": {"nop": "X"}}}, resolve_secret=secrets.__getitem__
        )
    with pytest.raises(KeyError):  # a missing secret is reported when the document is loaded
        SoapOneStopClient.from_document(
            {**base, "auth": {"type": "wsse", "username": "u", "password": "env:NOPE"}},
            resolve_secret=secrets.__getitem__,
        )


def test_mapping_validation() -> None:
    assert SoapMapping.parse(None).operation("deliver") == "TiepNhanHoSo"
    mapping = SoapMapping.parse(VARIANT_MAPPING)
    assert mapping.operation("status") == "TraCuuHoSo" and mapping.name("MaHoSo") == "SoHoSo"
    assert mapping.inbound({"SoHoSo": "x", "TepDinhKem": [{"MaThanhPhan": "TP1"}]}) == {
        "MaHoSo": "x",
        "ThanhPhanHoSo": [{"MaThanhPhan": "TP1"}],
    }
    assert mapping.status("9") == "completed"
    for bad, message in [
        ({"paths": {}}, "unknown keys"),
        ({"fields": {"MaHoSo": "So Ho So"}}, "not an XML name"),
        ({"fields": {"MaHoSo": "X", "MaTTHC": "X"}}, "same name"),
        ({"soap_version": "2.0"}, "soap_version"),
    ]:
        with pytest.raises(ValueError, match=message):
            SoapMapping.parse(bad)


def test_dossier_conversion_checks() -> None:
    hoso = dossier_to_hoso(dossier())
    assert hoso["NgayTiepNhan"] == datetime.fromisoformat("2026-11-23T08:05:00+07:00")
    assert hoso["ThanhPhanHoSo"][1]["NoiDung"] == b"%PDF-1.7\n"
    assert hoso["PhiLePhi"] == [{"MaPhi": "LP1", "TenPhi": "Lệ phí cấp phép", "SoTien": 150000}]
    with pytest.raises(ValueError, match="received_at"):
        dossier_to_hoso({**dossier(), "received_at": None})
    with pytest.raises(ValueError, match="neither content_base64 nor fetch_url"):
        dossier_to_hoso({**dossier(), "components": [{"code": "TP1"}]})
    for malformed in ("***", "JVBERi0=x", "JVBERi0xLjcK=", "JVBERi0xLjcK\n", "ĐVBERi0x"):
        with pytest.raises(ValueError, match="not base64"):
            dossier_to_hoso({**dossier(), "components": [{"code": "TP1", "content_base64": malformed}]})
    with pytest.raises(ValueError, match="whole number"):
        dossier_to_hoso({**dossier(), "fees": [{"code": "LP1", "amount": -5}]})


async def test_plain_calls_skip_zeeps_value_objects(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests of the reference service are rendered from the values directly (see
    ``tests/test_adapters_soap_envelopes.py``); zeep checks each answer (faults, envelope) but leaves its payload to
    the adapter, which reads it once."""
    converted: list[str] = []
    original = SoapMessage.deserialize

    def deserialize(message: SoapMessage, envelope: object) -> object:
        converted.append(message.operation.name)
        return original(message, envelope)

    built_by_zeep: list[str] = []
    create = SoapMessage.serialize

    def serialize(message: SoapMessage, *args: object, **kwargs: object) -> object:
        built_by_zeep.append(message.operation.name)
        return create(message, *args, **kwargs)

    monkeypatch.setattr(SoapMessage, "deserialize", deserialize)
    monkeypatch.setattr(SoapMessage, "serialize", serialize)
    client = soap_client(http, agency.base_url)
    receipt = await client.deliver(dossier(), f"{CODE}:deliver")
    assert receipt.agency_reference == "SIM-000001" and receipt.status == "submitted" and not receipt.duplicate
    status = await client.get_status(CODE)
    assert status.dossier_code == CODE and status.status == "submitted" and status.at is not None
    with pytest.raises(SoapFaultError) as missing:
        await client.get_status(f"{AGENCY}-261123-0404")
    assert missing.value.business_code == "KHONG_TIM_THAY"
    assert converted == [] and built_by_zeep == []
    assert assert_requests_valid(sim) == 3


async def test_concurrent_calls_share_one_zeep_client(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url)
    codes = [f"{AGENCY}-261123-{n:04d}" for n in range(1, 5)]
    receipts = await asyncio.gather(*(client.deliver(dossier(code), f"{code}:deliver") for code in codes))
    assert [r.dossier_code for r in receipts] == codes and not any(r.duplicate for r in receipts)
    built = client._zeep
    assert built is not None
    assert (await client.get_status(codes[0])).dossier_code == codes[0]
    assert client._zeep is built  # built once per loaded description, not per call
    assert sorted(sim.core.dossiers) == codes
    assert assert_requests_valid(sim) == 5
