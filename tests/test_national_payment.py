"""The national payment platform as the second provider, end to end: the gateway, the payment simulator (serving the
national platform under ``/national``) and the agency simulator on loopback servers. A procedure mapped to
``national`` gets its payment created at the platform through the outbox (``payment.init``), paid by the simulator's
notification (``MaLoi`` 00, a duplicate 02); a forged ``MaXacThuc`` (97), an amount mismatch (04) and an unknown
reference (01) change nothing; the query job and the reconciliation read the platform too; the wire is checked.

Every server binds 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.http import default_factory
from adapters.payment import InvalidSignature, LocalPayment, PaymentState
from adapters.payment.national_wire import NOTIFICATION_FIELDS, checksum, signed, verify_checksum
from gateway import messages
from gateway.bootstrap import context_of
from gateway.bootstrap.upstreams import build_national_provider, build_signer
from gateway.flows.payment.jobs import query_pending
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.national_payment import DEFAULT_PARTNER, NationalPaymentSimulator
from gateway.simulators.national_payment import DEFAULT_SECRET as NATIONAL_SECRET
from gateway.simulators.payment import PaymentSimulator
from gateway.simulators.payment import create_app as create_payment_platform
from gateway.store.models import Payment
from tests.api_support import PROCEDURE
from tests.servers import ServerThread
from tests.test_fees_flow import FEE, MERCHANT, SECRET, Flow, agency_sim, open_flow

__all__ = ["agency_sim"]  # the module-scoped agency simulator of the VNPay-style flow, shared

pytest_plugins = ("tests.api_fixtures",)


@pytest.fixture(scope="module")
def platforms() -> Iterator[tuple[str, PaymentSimulator, NationalPaymentSimulator]]:
    """The payment simulator on a loopback server: the VNPay-style platform, and the national one under /national."""
    app: Any = create_payment_platform(merchant_code=MERCHANT, secret=SECRET)
    with ServerThread(app) as server:
        yield server.base_url, app.state.simulator, app.state.national


@pytest.fixture
async def flow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    platforms: tuple[str, PaymentSimulator, NationalPaymentSimulator],
    agency_sim: tuple[str, AgencySimulator],
) -> AsyncIterator[Flow]:
    url, vnpay, sim = platforms
    national = {"base_url": f"{url}/national", "partner_code": DEFAULT_PARTNER, "secret": NATIONAL_SECRET}
    options: dict[str, Any] = {"national": national, "by_procedure": {PROCEDURE: "national"}}
    sim.reset()
    async for opened in open_flow("sqlite", tmp_path, monkeypatch, (url, vnpay), agency_sim, **options):
        sim.notify_url = f"{opened.gateway_url}/api/v1/payments/notify/national"
        opened.national = sim  # type: ignore[attr-defined]
        yield opened
        sim.notify_url = None


async def requested_at_platform(flow: Flow) -> tuple[str, dict[str, Any]]:
    """A dossier asked for its fees, its payment created at the national platform by the outbox."""
    code, view = await flow.requested()
    assert view["payment"]["status"] == "pending" and view["payment"]["url"] is None  # not created there yet
    await flow.drain(lambda: all(p.url for p in flow.rows(Payment)))  # the outbox created it at the platform
    return code, await flow.get(code)


async def pay(flow: Flow, url: str, **options: Any) -> dict[str, Any]:
    """The payer pays at the national platform's page (the simulator then notifies the gateway)."""
    async with httpx.AsyncClient(base_url=flow.platform_url, trust_env=False, timeout=20) as payer:
        response = await payer.post("/national/_sim/pay-url", json={"url": url, **options})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_checksum_is_sha256_of_the_values_in_order_then_the_secret() -> None:
    values = {"MaThamChieu": "R1", "MaGiaoDich": "NPP1", "SoTien": 150000, "TrangThai": "00", "ThoiGianGD": "1"}
    expected = hashlib.sha256(b"R1|NPP1|150000|00|1|k").hexdigest()
    assert checksum(values, NOTIFICATION_FIELDS, "k") == expected
    verify_checksum(signed(values, NOTIFICATION_FIELDS, "k"), NOTIFICATION_FIELDS, "k")
    with pytest.raises(InvalidSignature):
        verify_checksum({**signed(values, NOTIFICATION_FIELDS, "k"), "SoTien": 1}, NOTIFICATION_FIELDS, "k")


async def test_national_platform_paid_duplicate_forged_mismatch_unknown_and_lost_notifications(flow: Flow) -> None:
    code, view = await requested_at_platform(flow)
    payment = view["payment"]
    assert payment["url"].startswith(f"{flow.platform_url}/national/pay/NPP")
    [row] = flow.rows(Payment)
    assert row.provider == "national" and row.details["transaction_id"]
    paid = await pay(flow, payment["url"], duplicate=True)
    assert [a["answer"] for a in paid["answers"]] == [{"MaLoi": "00"}, {"MaLoi": "02"}]
    after = await flow.get(code)
    assert after["status"] == "processing" and after["fees"][0]["paid"] is True
    assert after["payment"]["status"] == "paid"
    assert after["history"][-1]["actor"] == "payment:national"
    assert [h.get("step") for h in after["history"]].count("fee_paid") == 1
    settlement = flow.national.settlement(paid["transaction"]["paid_time"][:8])  # type: ignore[attr-defined]
    local = [LocalPayment(payment["reference"], FEE, PaymentState.PAID)]
    assert flow.runtime.settings.payment is not None
    report = build_national_provider(flow.runtime.settings.payment).reconcile(settlement, local)
    assert report.ok and report.matched == [payment["reference"]]

    # Another dossier: forged, mismatched and unknown notifications change nothing; a lost one, the query job finds.
    code, view = await requested_at_platform(flow)
    url = view["payment"]["url"]
    assert [a["answer"] for a in (await pay(flow, url, forge=True))["answers"]] == [{"MaLoi": "97"}]
    assert [a["answer"] for a in (await pay(flow, url, amount_vnd=1_000))["answers"]] == [{"MaLoi": "04"}]
    unknown = {"MaThamChieu": "X-P1", "MaGiaoDich": "1", "SoTien": FEE, "TrangThai": "00", "ThoiGianGD": ""}
    body = signed(unknown, NOTIFICATION_FIELDS, NATIONAL_SECRET)
    answer = await flow.client.post("/api/v1/payments/notify/national", json=body)
    assert answer.json() == {"MaLoi": "01"}
    garbage = await flow.client.post("/api/v1/payments/notify/national", content=b"[1]")
    assert garbage.json() == {"MaLoi": "99"}
    assert await flow.get(code) == view
    assert [p.status for p in flow.rows(Payment)] == ["paid", "pending"]
    assert flow.fee_paid_messages(code) == []  # the agency is told nothing

    await pay(flow, url, notify=False)  # paid, but the notification is lost: the query job finds out
    settings = flow.runtime.settings.payment
    assert settings is not None and settings.national is not None
    flow.clock.advance(minutes=30)
    async with default_factory.client(messages.PAYMENT_TARGET, settings.national.client_settings()) as http:
        national = build_national_provider(settings, http)
        counts = await query_pending(
            context_of(flow.runtime),
            settings,
            national,
            now=flow.clock.now,
            sign=build_signer(settings),
            others={"national": national},
        )
    assert counts == {"paid": 1}
    assert (await flow.get(code))["payment"]["status"] == "paid"
