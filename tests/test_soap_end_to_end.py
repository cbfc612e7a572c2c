"""A SOAP agency end to end: registered from a JSON document (its WSDL loaded and checked), proven by ``agency
check``, a dossier submitted through the API and delivered once by the outbox worker to the SOAP simulator on a real
uvicorn server; the mapping variant refused without its mapping and served with it; a REST agency alongside.

Everything listens on 127.0.0.1 (``[registry] allow_private_endpoints = true``); every wait has a limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.bootstrap import Composition
from gateway.cli import main
from gateway.outbox import RetryPolicy
from gateway.runtime import Runtime
from gateway.simulators.agency import create_app as create_rest_simulator
from gateway.simulators.soap_agency import VARIANT_MAPPING, create_soap_app
from gateway.workers import OutboxWorker
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY3,
    PROCEDURE,
    Gateway,
    component,
    gateway_client,
    open_runtime,
    submission,
)
from tests.servers import ServerThread
from tests.test_dispatch import deliver_view

WSSE_USER = "lgsp-sxd"
WSSE_PASSWORD = "mat-khau-wsse-0123"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with open_runtime("sqlite", tmp_path, registry={"wsdl_cache_dir": "wsdl-cache"}) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


def soap_document(base_url: str, **changes: Any) -> dict[str, Any]:
    document = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "soap",
        "endpoint": None,
        "wsdl": f"{base_url}/soap?wsdl",
        "procedures": [PROCEDURE],
        "auth": {"type": "none"},
        "status_updates": {"mode": "callback"},
        "mapping": None,
    }
    document.update(changes)
    return document


def cli_config(tmp_path: Path, runtime: Runtime) -> Path:
    url = runtime.settings.database.url
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[registry]\nallow_private_endpoints = true\nwsdl_cache_dir = "wsdl-cache"\n',
        encoding="utf-8",
    )
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))  # the CLI runs event loops of its own
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def deliver_all(runtime: Runtime, dispatcher: Composition, done: Any) -> None:
    worker = OutboxWorker(runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01))
    with anyio.fail_after(30):
        while not done():
            await worker.run_once()
            await asyncio.sleep(0.01)


async def test_soap_agency_registered_checked_and_delivered_once(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_WSSE_PASSWORD", WSSE_PASSWORD)
    config = cli_config(tmp_path, gw.runtime)
    with (
        ServerThread(create_soap_app(wsse=(WSSE_USER, WSSE_PASSWORD))) as soap,
        ServerThread(create_rest_simulator()) as rest,
    ):
        soap_sim = soap.app.state.simulator
        rest_sim = rest.app.state.simulator
        # Registered from a JSON document through the CLI: the WSDL is loaded and checked first.
        auth = {"type": "wsse", "username": WSSE_USER, "password": "env:E2E_WSSE_PASSWORD"}
        file = tmp_path / "sxd.json"
        file.write_text(json.dumps(soap_document(soap.base_url, auth=auth), ensure_ascii=False), encoding="utf-8")
        code, out, err = await cli(
            capsys, "agency", "register", "--file", str(file), "--replace", "--config", str(config)
        )
        assert code == 0, err
        assert out.startswith(f"updated {AGENCY} (Sở Xây dựng): soap")
        code, out, err = await cli(capsys, "agency", "check", AGENCY, "--config", str(config))
        assert code == 0, err
        assert "OK: port" in out and "TiepNhanHoSo" in out and "\n" not in out.strip()

        # A REST agency alongside (through the API, no WSDL to check).
        rest_document = {
            "code": AGENCY3,
            "name": "Sở Kế hoạch và Đầu tư",
            "protocol": "rest",
            "endpoint": rest.base_url,
            "procedures": ["2.001610"],
        }
        registered = await gw.client.post("/api/v1/admin/agencies?replace=true", json=rest_document, headers=ADMIN)
        assert registered.status_code == 200, registered.text

        soap_dossier = (await gw.submitted())["code"]
        rest_body = submission(
            procedure_code="2.001610", agency_code=AGENCY3, components=[component("TP1"), component("TP2")], fees=None
        )
        rest_dossier = (await gw.submitted(rest_body))["code"]

        dispatcher = Composition(gw.runtime)
        try:
            await deliver_all(
                gw.runtime,
                dispatcher,
                lambda: soap_dossier in soap_sim.core.dossiers and rest_dossier in rest_sim.dossiers,
            )
            assert soap_sim.core.effects["deliver"] == 1
            received = soap_sim.core.dossiers[soap_dossier]["received"]
            assert received["code"] == soap_dossier and received["procedure_code"] == PROCEDURE
            assert rest_sim.effects["deliver"] == 1

            # The same message again (a redelivery after a lost answer): no second effect.
            await dispatcher.dispatch(deliver_view(soap_dossier))
            assert soap_sim.core.effects["deliver"] == 1
            assert soap_sim.counters["replayed"] >= 1
        finally:
            await dispatcher.aclose()
        exchanges = b"".join(request for request, _answer in soap_sim.exchanges)
        assert b"UsernameToken" in exchanges and WSSE_PASSWORD.encode() in exchanges
        assert any((tmp_path / "wsdl-cache").rglob("manifest.json"))  # kept for restarts with the agency down

    # The agency is down now: the check fails (exit code 1), in one line.
    code, out, err = await cli(capsys, "agency", "check", AGENCY, "--config", str(config))
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "check failed" in err


async def test_mapping_variant_refused_without_its_mapping_and_served_with_it(gw: Gateway) -> None:
    with ServerThread(create_soap_app(mapping_variant=True)) as soap:
        sim = soap.app.state.simulator
        url = "/api/v1/admin/agencies?replace=true"
        refused = await gw.client.post(url, json=soap_document(soap.base_url), headers=ADMIN)
        assert refused.status_code == 422, refused.text
        message = refused.json()["details"][0]["message"] if "details" in refused.json() else refused.text
        assert "TiepNhanHoSo" in refused.text and "not found" in message
        assert "\n" not in message

        accepted = await gw.client.post(url, json=soap_document(soap.base_url, mapping=VARIANT_MAPPING), headers=ADMIN)
        assert accepted.status_code == 200, accepted.text

        code = (await gw.submitted())["code"]
        dispatcher = Composition(gw.runtime)
        try:
            await deliver_all(gw.runtime, dispatcher, lambda: code in sim.core.dossiers)
            await dispatcher.dispatch(deliver_view(code))
        finally:
            await dispatcher.aclose()
        assert sim.core.effects["deliver"] == 1
        assert b"urn:sxd:motcua:2.0" in sim.exchanges[-1][0]
