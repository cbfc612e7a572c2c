"""Hostile callers: one agency's token used on another agency's resources, and registrations that try to make the
gateway connect inside the province's network (SSRF) through names that resolve to private, loopback, link-local or
cloud-metadata addresses, or through redirects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import Response

from gateway import registry
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY2_AUTH,
    AGENCY_AUTH,
    Gateway,
    gateway_client,
    open_runtime,
    registration,
)
from tests.servers import ServerThread

pytest_plugins = ("tests.api_fixtures",)

#: Names the tests' resolver answers, each for an address the gateway must never be sent to.
HOSTILE_NAMES = {
    "intranet.hostile.test": ("10.20.30.40", "private address"),
    "loopback.hostile.test": ("127.0.0.2", "loopback address"),
    "v6loopback.hostile.test": ("::1", "loopback address"),
    "linklocal.hostile.test": ("169.254.10.1", "link-local or cloud metadata address"),
    "metadata.hostile.test": ("169.254.169.254", "link-local or cloud metadata address"),
    "mapped.hostile.test": ("::ffff:169.254.169.254", "link-local or cloud metadata address"),
    "mixed.hostile.test": ("203.162.4.190 10.0.0.1", "private address"),  # one public address is not enough
}


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``socket.getaddrinfo`` answering :data:`HOSTILE_NAMES`; the names asked are listed (in order)."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name.endswith(".hostile.test"):
            asked.append(name)
            if name not in HOSTILE_NAMES:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (a, port))
                for a in HOSTILE_NAMES[name][0].split()
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture
async def strict_gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway whose registry refuses private endpoints (the production default)."""
    with open_runtime("sqlite", tmp_path, registry={"allow_private_endpoints": False}) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


# -- one agency's token on another agency's resources ------------------------------------------------------------------


async def _snapshot(gw: Gateway, code: str) -> tuple[str, int]:
    view = await gw.get(code)
    return view["status"], len(view["history"])


async def test_another_agencys_token_is_403_and_changes_nothing(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]  # handled by AGENCY
    before = await _snapshot(gw, code)
    # Reading the dossier (personal data) with AGENCY2's token.
    read = await gw.client.get(f"/api/v1/dossiers/{code}", headers=AGENCY2_AUTH)
    assert read.status_code == 403 and read.json()["error"]["code"] == "forbidden"
    assert "Nguyễn" not in read.text
    # Events about it: on AGENCY's path with AGENCY2's token, and on AGENCY2's own path.
    for path_agency in (AGENCY, AGENCY2):
        for status in ("received", "processing", "completed", "supplement_requested", "withdrawn"):
            response = await gw.event(code, status, token=AGENCY2_AUTH, agency=path_agency, reason="x", components=[])
            assert response.status_code == 403, (path_agency, status, response.text)
    # A transfer of someone else's dossier to oneself.
    response = await gw.event(code, "processing", token=AGENCY2_AUTH, agency=AGENCY2, transfer_to=AGENCY2)
    assert response.status_code == 403, response.text
    # The agency's own view of the portal's requests is the portal's only.
    for path in (f"/api/v1/dossiers/{code}/withdraw", f"/api/v1/dossiers/{code}/supplements"):
        response = await gw.client.post(path, json={"reason": "x", "components": []}, headers=AGENCY2_AUTH)
        assert response.status_code == 403, path
    assert await _snapshot(gw, code) == before
    # The right agency still can.
    assert (await gw.event(code, "received")).status_code == 200
    assert (await gw.get(code, AGENCY_AUTH))["status"] == "received"


async def test_another_agencys_questions_are_403(gw: Gateway) -> None:
    paths = gw.app.openapi()["paths"]
    if "/api/v1/agencies/{agency}/questions" not in paths:
        pytest.skip("this build has no questions API")
    listed = await gw.client.get(f"/api/v1/agencies/{AGENCY}/questions", headers=AGENCY2_AUTH)
    assert listed.status_code == 403
    answer = f"/api/v1/agencies/{AGENCY}/questions/1/answer"
    assert (await gw.client.post(answer, json={"answer": "x"}, headers=AGENCY2_AUTH)).status_code == 403


# -- SSRF through registration -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES))
async def test_a_name_resolving_inside_is_refused_at_registration(
    strict_gw: Gateway, resolver: list[str], name: str
) -> None:
    address, reason = HOSTILE_NAMES[name]
    document = registration("000.00.99.H38", ["1.009794"]) | {"endpoint": f"https://{name}/api"}
    response = await strict_gw.client.post("/api/v1/admin/agencies", json=document, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    [endpoint] = [item["message"] for item in error["details"] if item["field"] == "endpoint"]
    assert f"refusing to connect to {name}" in endpoint and reason in endpoint, endpoint
    assert address.split()[-1] in endpoint
    assert name in resolver
    listed = await strict_gw.client.get("/api/v1/admin/agencies/000.00.99.H38", headers=ADMIN)
    assert listed.status_code == 404


async def test_metadata_names_are_refused_even_where_private_endpoints_are_allowed(
    gw: Gateway, resolver: list[str]
) -> None:
    for field, url in (("endpoint", "https://metadata.hostile.test/api"), ("wsdl", "https://linklocal.hostile.test/")):
        document = registration("000.00.99.H38", ["1.009794"]) | {"endpoint": "https://203.162.4.190/api"}
        if field == "wsdl":
            document |= {"protocol": "soap", "wsdl": url, "endpoint": "https://203.162.4.190/ws"}
        else:
            document[field] = url
        response = await gw.client.post("/api/v1/admin/agencies", json=document, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert "link-local or cloud metadata address" in response.text


def _redirecting(location: str) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await Response(b"", 302, headers={"Location": location})(scope, receive, send)

    return app


@pytest.fixture
def redirector() -> Iterator[ServerThread]:
    with ServerThread(_redirecting("http://metadata.hostile.test/latest/meta-data/")) as server:
        yield server


def test_a_redirect_to_an_inside_address_is_not_followed(redirector: ServerThread, resolver: list[str]) -> None:
    """An agency's (allowed) server answering a redirect to the metadata service: the check fails on the redirect;
    the redirect's target is never even resolved."""
    settings = registry.RegistrySettings(allow_private_endpoints=True)
    document = registration("000.00.99.H38", ["1.009794"]) | {"endpoint": f"{redirector.base_url}/api"}
    reg = registry.validate_registration(document, settings=settings, known_procedures={"1.009794"})
    result = asyncio.run(registry.check_endpoint(reg, settings=settings))
    assert not result.ok and "302" in result.message, result.message
    assert resolver == []
