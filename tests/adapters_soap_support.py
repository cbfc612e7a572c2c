"""Values, helpers and fixtures of the SOAP one-stop client tests.

The fixtures (``__all__``) are star-imported by the test modules, pytest finds fixtures among a module's names; the
other names are imported by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.http import ClientFactory, ClientSettings, bearer
from adapters.netguard import AddressPolicy
from adapters.onestop.soap import SoapOneStopClient
from gateway.simulators.soap_agency import SoapAgencySimulator, create_soap_app
from tests.servers import ServerThread
from tests.soap_support import AGENCY, SOAP11, SOAP12, payload, schema

__all__ = ["agency", "http", "sim", "variant"]


TOKEN = "sim-soap-token"
LOCAL = AddressPolicy(allow_private=True)
CODE = f"{AGENCY}-261123-0001"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def agency() -> Iterator[ServerThread]:
    with ServerThread(create_soap_app(token=TOKEN)) as server:
        yield server


@pytest.fixture(scope="module")
def variant() -> Iterator[ServerThread]:
    with ServerThread(create_soap_app(mapping_variant=True)) as server:
        yield server


@pytest.fixture
def sim(agency: ServerThread) -> Iterator[SoapAgencySimulator]:
    simulator: SoapAgencySimulator = agency.app.state.simulator
    simulator.reset()
    yield simulator
    simulator.reset()


def client_settings(base_url: str, **overrides: Any) -> ClientSettings:
    return ClientSettings(base_url=base_url, **{"address_policy": LOCAL, "timeout_seconds": 5, **overrides})


@pytest.fixture
async def http(agency: ServerThread, sim: SoapAgencySimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with ClientFactory().client(f"agency:{AGENCY}", client_settings(agency.base_url), auth=bearer(TOKEN)) as c:
        yield c


def soap_client(http: httpx.AsyncClient, base_url: str, **options: Any) -> SoapOneStopClient:
    options.setdefault("address_policy", LOCAL)
    return SoapOneStopClient(http, agency_code=AGENCY, wsdl=f"{base_url}/soap?wsdl", **options)


def version_mapping(version: str) -> dict[str, Any]:
    return {"soap_version": version}


def assert_requests_valid(
    sim: SoapAgencySimulator, *, mapping_variant: bool = False, version: str | None = None
) -> int:
    """Every request the simulator received validates against the XSD (xmlschema); returns how many there were."""
    xsd = schema(mapping_variant=mapping_variant)
    for request, answer in sim.exchanges:
        xsd.validate(etree.tostring(payload(request)).decode())
        if version is not None:
            expected = SOAP11 if version == "1.1" else SOAP12
            assert etree.QName(etree.fromstring(request)).namespace == expected
        if b"Fault>" not in answer:
            xsd.validate(etree.tostring(payload(answer)).decode())
    return len(sim.exchanges)
