"""The SOAP one-stop client against the SOAP simulator: unreadable, failed, oversized and slow answers, HTTP errors,
blocked addresses, and the offline WSDL cache.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import httpx
import pytest
import zeep.exceptions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import ClientFactory, bearer
from adapters.netguard import AddressPolicy
from adapters.onestop.soap import (
    DEFAULT_MAX_ANSWER_BYTES,
    SoapFaultError,
    SoapOneStopClient,
    WsdlLoader,
)
from gateway.simulators.soap_agency import SoapAgencySimulator, create_soap_app
from tests.adapters_soap_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.adapters_soap_support import (
    CODE,
    ROOT,
    TOKEN,
    client_settings,
    soap_client,
    version_mapping,
)
from tests.servers import ServerThread
from tests.soap_support import AGENCY, SOAP11, SOAP12, dossier, faults, sim_state

# ----------------------------------------------------------------------------------------------------------------------
# Robustness
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "version", "error", "message"),
    [
        ({"wrong_namespace_next": 1}, "1.1", BadResponseError, "is in namespace urn:khong-phai-dich-vu:9.9"),
        ({"version_mismatch_next": 1}, "1.1", BadResponseError, "a SOAP 1.2 envelope answered a SOAP 1.1 request"),
        ({"version_mismatch_next": 1}, "1.2", BadResponseError, "a SOAP 1.1 envelope answered a SOAP 1.2 request"),
        ({"html_next": 1}, "1.1", BadResponseError, "expected a SOAP envelope, got an HTML page"),
        ({"truncate_next": 1}, "1.2", BadResponseError, "not well-formed XML"),
        ({"xml_bomb_next": 1}, "1.1", BadResponseError, "carries a DTD"),
        ({"soap_server_fault": 1}, "1.1", TransientError, "SOAP fault Server"),
        ({"soap_server_fault": 1}, "1.2", TransientError, "SOAP fault Receiver"),
    ],
)
async def test_unreadable_or_failed_answers(
    http: httpx.AsyncClient,
    sim: SoapAgencySimulator,
    agency: ServerThread,
    fault: dict[str, int],
    version: str,
    error: type[Exception],
    message: str,
) -> None:
    client = soap_client(http, agency.base_url, mapping=version_mapping(version))
    await client.deliver(dossier(), f"{CODE}:deliver")
    await faults(agency.base_url, **fault)
    tracemalloc.start()
    try:
        with pytest.raises(error) as caught:
            await client.get_status(CODE)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert type(caught.value) is error and caught.value.retryable  # type: ignore[attr-defined]
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 300
    assert "Nguyễn" not in text
    assert peak < 5 * 1024 * 1024  # the billion laughs never expanded
    assert (await client.get_status(CODE)).status == "submitted"  # the next call is fine


async def test_business_fault_is_permanent_with_its_code(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    client = soap_client(http, agency.base_url, mapping=version_mapping("1.2"))
    await faults(agency.base_url, fail_next=1, fail_code="HO_SO_KHONG_HOP_LE")
    with pytest.raises(SoapFaultError) as caught:
        await client.deliver(dossier(), f"{CODE}:deliver")
    assert isinstance(caught.value, PermanentError) and not caught.value.retryable
    assert caught.value.business_code == "HO_SO_KHONG_HOP_LE" and caught.value.fault_code == "Sender"
    assert "HO_SO_KHONG_HOP_LE" in str(caught.value) and caught.value.status_code == 400
    with pytest.raises(SoapFaultError) as missing:
        await client.get_status(f"{AGENCY}-261123-0404")
    assert missing.value.business_code == "KHONG_TIM_THAY"
    assert (await sim_state(agency.base_url))["effects"] == {}


async def test_oversized_answer_is_cut_off_with_bounded_memory(sim: SoapAgencySimulator, agency: ServerThread) -> None:
    settings = client_settings(agency.base_url, max_response_bytes=DEFAULT_MAX_ANSWER_BYTES)
    async with ClientFactory().client(f"agency:{AGENCY}", settings, auth=bearer(TOKEN)) as http:
        client = soap_client(http, agency.base_url)
        await client.load()
        await faults(agency.base_url, oversize_next=1, oversize_bytes=50_000_000)
        tracemalloc.start()
        try:
            with pytest.raises(BadResponseError, match="larger than the limit of 10485760 bytes"):
                await client.get_status(CODE)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 30 * 1024 * 1024  # the 10 MiB cap, not 50 MB
        await asyncio.sleep(0.2)
        assert sim.bytes_streamed < 50_000_000
        with pytest.raises(SoapFaultError, match="KHONG_TIM_THAY"):  # the next call is answered normally
            await client.get_status(CODE)


async def test_from_document_caps_answers_and_shares_the_loader() -> None:
    loader = WsdlLoader()
    document = {"code": AGENCY, "protocol": "soap", "wsdl": "https://motcua.example.vn/soap?wsdl"}
    secrets: dict[str, str] = {}
    async with SoapOneStopClient.from_document(
        document, resolve_secret=secrets.__getitem__, factory=ClientFactory(), wsdl_loader=loader
    ) as client:
        assert client.wsdl_loader is loader
        assert client._http._transport.max_response_bytes == DEFAULT_MAX_ANSWER_BYTES  # type: ignore[attr-defined]
    async with SoapOneStopClient.from_document(
        document, resolve_secret=secrets.__getitem__, factory=ClientFactory(), max_answer_bytes=4096
    ) as other:
        assert other.wsdl_loader is not loader
        assert other._http._transport.max_response_bytes == 4096  # type: ignore[attr-defined]


async def test_slow_answer_times_out(sim: SoapAgencySimulator, agency: ServerThread) -> None:
    settings = client_settings(agency.base_url, timeout_seconds=0.3)
    async with ClientFactory().client(f"agency:{AGENCY}", settings, auth=bearer(TOKEN)) as http:
        client = soap_client(http, agency.base_url)
        await client.load()
        await faults(agency.base_url, delay_seconds=3)
        with pytest.raises(TransientError, match="timed out"):
            await client.get_status(CODE)
        await faults(agency.base_url, delay_seconds=0)


UTF16_BOMB = (
    '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + f']><soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><mc:LayTrangThaiHoSoResponse xmlns:mc="urn:dvc:motcua:1.0">'
    "<mc:ThoiDiemTraLoi>&lol9;</mc:ThoiDiemTraLoi></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
).encode("utf-16")


UTF16_DTD = (
    '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE d [<!ENTITY e "x">]>'
    f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><mc:LayTrangThaiHoSoResponse xmlns:mc="urn:dvc:motcua:1.0">'
    "<mc:ThoiDiemTraLoi>&e;</mc:ThoiDiemTraLoi></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
).encode("utf-16")


def failing_app() -> Starlette:
    async def post(request: Request) -> Response:
        if request.query_params.get("kind") == "bomb16":  # not caught by the byte-level screen: zeep refuses it
            return Response(UTF16_BOMB, media_type="text/xml; charset=utf-16")
        if request.query_params.get("kind") == "dtd16":
            return Response(UTF16_DTD, media_type="text/xml; charset=utf-16")
        if request.query_params.get("kind") == "html":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
        return Response("Service Unavailable", status_code=503, media_type="text/plain")

    return Starlette(routes=[Route("/soap", post, methods=["POST"])])


MTOM_BOUNDARY = "MIMEBoundary_dvc_0001"


def mtom_app(upstream: str, *, answer_version: str | None = None) -> Starlette:
    """An agency answering in MTOM (``multipart/related``): the simulator's answer as the root part, its envelope
    turned into ``answer_version``'s when given."""

    async def post(request: Request) -> Response:
        forwarded = {name: request.headers[name] for name in ("content-type", "soapaction", "authorization")}
        async with httpx.AsyncClient() as client:
            answered = await client.post(upstream, content=await request.body(), headers=forwarded)
        root = answered.content
        if answer_version == "1.2":
            root = root.replace(SOAP11.encode(), SOAP12.encode())
        part = (
            f'--{MTOM_BOUNDARY}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
            "Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@dvc>\r\n\r\n"
        ).encode()
        media = (
            f'multipart/related; type="application/xop+xml"; start="<root.message@dvc>"; start-info="text/xml"; '
            f'boundary="{MTOM_BOUNDARY}"'
        )
        body = part + root + f"\r\n--{MTOM_BOUNDARY}--\r\n".encode()
        return Response(body, status_code=answered.status_code, media_type=media)

    return Starlette(routes=[Route("/soap", post, methods=["POST"])])


async def test_an_mtom_answer_is_read_from_its_root_part(
    http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread
) -> None:
    with ServerThread(mtom_app(f"{agency.base_url}/soap")) as mtom:
        client = soap_client(http, agency.base_url, endpoint=f"{mtom.base_url}/soap")
        receipt = await client.deliver(dossier(), f"{CODE}:deliver")
        assert receipt.agency_reference == "SIM-000001" and receipt.status == "submitted"
        assert (await client.get_status(CODE)).status == "submitted"
        with pytest.raises(SoapFaultError) as missing:  # a fault in the root part
            await client.get_status(f"{AGENCY}-261123-0404")
        assert missing.value.business_code == "KHONG_TIM_THAY"
    with ServerThread(mtom_app(f"{agency.base_url}/soap", answer_version="1.2")) as other:
        client = soap_client(http, agency.base_url, endpoint=f"{other.base_url}/soap")
        with pytest.raises(BadResponseError, match="does not match the service description") as refused:
            await client.get_status(CODE)
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 300


async def test_http_errors(http: httpx.AsyncClient, sim: SoapAgencySimulator, agency: ServerThread) -> None:
    with ServerThread(failing_app()) as failing:
        for endpoint in (f"{failing.base_url}/soap", f"{failing.base_url}/soap?kind=html"):
            client = soap_client(http, agency.base_url, endpoint=endpoint)
            with pytest.raises(TransientError) as caught:
                await client.get_status(CODE)
            assert type(caught.value) is TransientError and caught.value.status_code in (502, 503)
        for kind in ("bomb16", "dtd16"):  # past the byte-level screen: refused by libxml2's limits, then by zeep's
            client = soap_client(http, agency.base_url, endpoint=f"{failing.base_url}/soap?kind={kind}")
            tracemalloc.start()
            try:
                with pytest.raises(BadResponseError, match="carries a DTD or entities") as refused:
                    await client.get_status(CODE)
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 5 * 1024 * 1024
            cause = refused.value.__cause__
            assert (cause is None) if kind == "bomb16" else isinstance(cause, zeep.exceptions.DTDForbidden)
    async with ClientFactory().client(f"agency:{AGENCY}", client_settings(agency.base_url)) as anonymous:
        client = soap_client(anonymous, agency.base_url, endpoint=f"{agency.base_url}/soap")
        client.wsdl = f"{agency.base_url}/soap?wsdl"
        with pytest.raises(AuthError):
            await client.get_status(CODE)


async def test_blocked_addresses_are_refused(agency: ServerThread) -> None:
    strict = client_settings(agency.base_url, address_policy=AddressPolicy())
    async with ClientFactory().client(f"agency:{AGENCY}", strict, auth=bearer(TOKEN)) as http:
        client = soap_client(http, agency.base_url, address_policy=AddressPolicy())
        with pytest.raises(PermanentError, match=r"Refusing to connect to 127\.0\.0\.1: loopback address"):
            await client.load()
    async with ClientFactory().client(f"agency:{AGENCY}", client_settings(agency.base_url)) as http:
        client = SoapOneStopClient(http, agency_code=AGENCY, wsdl="http://169.254.169.254/latest/wsdl")
        with pytest.raises(PermanentError, match="link-local or cloud metadata address"):
            await client.load()


# ----------------------------------------------------------------------------------------------------------------------
# Offline cache
# ----------------------------------------------------------------------------------------------------------------------

OFFLINE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from adapters.http import ClientFactory, ClientSettings
    from adapters.netguard import AddressPolicy
    from adapters.onestop.soap import SoapOneStopClient

    async def main():
        settings = ClientSettings(base_url=sys.argv[1], address_policy=AddressPolicy(allow_private=True))
        async with ClientFactory().client("agency:offline", settings) as http:
            client = SoapOneStopClient(http, agency_code="000.00.23.H38", wsdl=sys.argv[1] + "/soap?wsdl",
                                       cache_dir=sys.argv[2], address_policy=AddressPolicy(allow_private=True))
            await client.load()
            print(client.port_name, client.soap_version, client.wsdl_loader.stats().get("offline"))

    asyncio.run(main())
    """
)


async def test_offline_cache_loads_without_the_agency(tmp_path: Path) -> None:
    cache = tmp_path / "wsdl-cache"
    with ServerThread(create_soap_app()) as server:
        base = server.base_url
        async with ClientFactory().client("agency:offline", client_settings(base)) as http:
            client = soap_client(http, base, cache_dir=cache)
            await client.deliver(dossier(), f"{CODE}:deliver")
    entries = list(cache.iterdir())
    assert len(entries) == 1 and len(list(entries[0].glob("*.xml"))) == 2

    async with ClientFactory().client("agency:offline", client_settings(base)) as http:
        without_cache = soap_client(http, base)
        with pytest.raises(TransientError):
            await without_cache.load()
        restarted = soap_client(http, base, cache_dir=cache)
        loaded = await restarted.load()
        assert loaded.from_cache and restarted.soap_version == "1.1" and restarted.address == f"{base}/soap"
        assert restarted.wsdl_loader.stats() == {"offline": 1}
        with pytest.raises(TransientError):  # the description loads, the agency itself is still down
            await restarted.get_status(CODE)

    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, base, str(cache)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TiepNhanHoSoSoap11", "1.1", "1"]


async def test_damaged_offline_copy_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with ServerThread(create_soap_app()) as server:
        base = server.base_url
        async with ClientFactory().client("agency:offline", client_settings(base)) as http:
            await soap_client(http, base, cache_dir=cache).load()
    for document in cache.glob("*/*.xml"):
        document.write_bytes(document.read_bytes().replace(b"TiepNhanHoSo", b"XXXXXXXXXXXX"))
    async with ClientFactory().client("agency:offline", client_settings(base)) as http:
        with pytest.raises(TransientError):
            await soap_client(http, base, cache_dir=cache).load()
