"""The simulators' ``/_sim`` controls, shared by the REST and SOAP agency simulators: faults checked field by field,
reset, and events injected for a dossier."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.simulators.agency import create_app
from gateway.simulators.soap_agency import create_soap_app

APPS: dict[str, Callable[[], Any]] = {"rest": create_app, "soap": create_soap_app}


def client(kind: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=APPS[kind]()), base_url="http://sim")


@pytest.mark.parametrize("kind", sorted(APPS))
async def test_faults_are_checked_and_reset(kind: str) -> None:
    async with client(kind) as sim:
        changed = await sim.post("/_sim/faults", json={"fail_next": 2, "delay_seconds": 1})
        assert changed.status_code == 200
        assert changed.json()["fail_next"] == 2
        assert changed.json()["delay_seconds"] == 1.0  # an int taken for a float
        for wrong, message in (
            ({"no_such_fault": 1}, "unknown fault 'no_such_fault'"),
            ({"fail_next": -1}, "fail_next must be a non-negative int"),
            ({"fail_next": "2"}, "fail_next must be a non-negative int"),
            ({"delay_seconds": True}, "delay_seconds must be a non-negative float"),
            ([1, 2], "expected a JSON object"),
        ):
            refused = await sim.post("/_sim/faults", json=wrong)
            assert refused.status_code == 400
            assert refused.json() == {"error": "invalid_faults", "detail": message}
        assert (await sim.post("/_sim/faults", content=b"{not json")).status_code == 400
        reset = await sim.post("/_sim/faults", json={"reset": True})
        assert reset.json()["fail_next"] == 0 and reset.json()["delay_seconds"] == 0.0


async def test_each_simulator_keeps_its_own_rule() -> None:
    async with client("rest") as rest, client("soap") as soap:
        status = await rest.post("/_sim/faults", json={"fail_status": 200})
        assert status.json()["detail"] == "fail_status must be an HTTP error status (400-599)"
        code = await soap.post("/_sim/faults", json={"fail_code": "not upper"})
        assert code.json()["detail"] == "fail_code must be an upper-case code"
        assert (await soap.post("/_sim/faults", json={"fail_code": "TU_CHOI"})).json()["fail_code"] == "TU_CHOI"


@pytest.mark.parametrize("kind", sorted(APPS))
async def test_an_event_needs_a_json_object(kind: str) -> None:
    async with client(kind) as sim:
        for body in (b"[1]", b"{not json"):
            refused = await sim.post("/_sim/dossiers/X-1/events", content=body)
            assert refused.status_code == 400
            assert refused.json() == {"error": "invalid_json"}
        unknown = await sim.post("/_sim/dossiers/X-1/events", json={"status": "processing"})
        assert unknown.status_code == 404
