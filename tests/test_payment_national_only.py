"""A province paid only through the national payment platform: ``[payment]`` with ``provider = "national"``,
``return_url`` and ``[payment.national]``, and no VNPay-style key. The configuration loads as the daemon reads it and
passes the start-up check; choosing ``vnpay`` anywhere without its keys is refused in one line; a dossier with a fee
gets its payment created at the national platform simulator at intake and paid through it, the daemon's composition
built without VNPay (its notification endpoint ``404``, its provider never asked); ``payment reconcile --provider
vnpay`` is refused in one line.

Every server binds 127.0.0.1; every wait has a limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from adapters.payment import sign
from adapters.payment.national_wire import SETTLEMENT_COLUMNS as NATIONAL_COLUMNS
from adapters.payment.vnpay import SETTLEMENT_COLUMNS
from gateway.api import create_app
from gateway.bootstrap import Composition, check_settings, context_of
from gateway.bootstrap.upstreams import build_signer
from gateway.cli import main
from gateway.config import ConfigError
from gateway.flows.payment.jobs import query_pending
from gateway.runtime import Runtime
from gateway.settings import load_settings
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.national_payment import DEFAULT_PARTNER, NationalPaymentSimulator
from gateway.simulators.national_payment import DEFAULT_SECRET as NATIONAL_SECRET
from gateway.simulators.payment import PaymentSimulator
from gateway.store.database import Database
from gateway.store.models import Dossier, Payment
from tests.api_support import Clock, open_runtime
from tests.databases import BACKENDS
from tests.servers import ServerThread
from tests.test_fees_flow import FEE, RETURN_URL, SECRET, Flow, agency_sim, point_agency_at
from tests.test_national_payment import pay, platforms

__all__ = ["agency_sim", "platforms"]  # the module-scoped simulators of the payment flows, shared

pytest_plugins = ("tests.api_fixtures",)

VNPAY_REFUSED = '"vnpay" takes payments (provider, by_procedure or by_agency)'


def national_only(platform_url: str, **changes: Any) -> dict[str, Any]:
    """A ``[payment]`` section with the national payment platform only: not one VNPay-style key."""
    national = {"base_url": f"{platform_url}/national", "partner_code": DEFAULT_PARTNER, "secret": NATIONAL_SECRET}
    return {"provider": "national", "return_url": RETURN_URL, "national": national, **changes}


def write_toml(path: Path, database_url: str, payment: dict[str, Any]) -> Path:
    """``[database]`` and ``payment`` as a TOML file (the ``national`` table as ``[payment.national]``)."""
    lines = ["[database]", f"url = {json.dumps(database_url)}", "[payment]"]
    for key, value in payment.items():
        if isinstance(value, dict) and key != "national":
            inline = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inline} }}")
        elif key != "national":
            lines.append(f"{key} = {json.dumps(value)}")
    lines.append("[payment.national]")
    lines += [f"{key} = {json.dumps(value)}" for key, value in payment["national"].items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------------------
# The configuration


def test_a_national_only_section_loads_and_passes_the_start_up_check(tmp_path: Path) -> None:
    config = write_toml(
        tmp_path / "gateway.toml", f"sqlite:///{tmp_path / 'gw.db'}", national_only("http://127.0.0.1:9")
    )
    settings = load_settings(config, environ={})
    payment = settings.payment
    assert payment is not None and payment.national is not None  # on: not mistaken for an integration that is off
    assert payment.provider_for("any procedure", "any agency") == "national"
    assert payment.vnpay_configured is False
    assert (payment.base_url, payment.merchant_code, payment.secret, payment.payment_url) == (None, None, None, None)
    assert payment.return_url == RETURN_URL
    runtime = Runtime.from_settings(settings, Database.connect(settings.database.url))
    try:
        check_settings(runtime)  # what the daemon builds before it starts
    finally:
        runtime.close()


@pytest.mark.parametrize(
    "changes",
    [
        {"by_procedure": {"1.000001": "vnpay"}},
        {"by_agency": {"000.00.23.H38": "vnpay"}},
        {"provider": "vnpay", "by_procedure": {"1.000001": "national"}},
    ],
    ids=["by_procedure", "by_agency", "provider"],
)
def test_vnpay_chosen_anywhere_without_its_keys_is_refused_in_one_line(tmp_path: Path, changes: dict[str, Any]) -> None:
    config = write_toml(tmp_path / "gateway.toml", "sqlite:///gw.db", national_only("http://127.0.0.1:9", **changes))
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert str(refused.value) == f"[payment] base_url, merchant_code, secret: are required when {VNPAY_REFUSED}"


def test_vnpay_keys_are_all_required_once_one_is_given(tmp_path: Path) -> None:
    section = national_only("http://127.0.0.1:9", merchant_code="DVCH38")
    config = write_toml(tmp_path / "gateway.toml", "sqlite:///gw.db", section)
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert (
        str(refused.value) == "[payment] base_url, secret: are required with merchant_code (the VNPay-style provider)"
    )
    # The return URL is the national platform's UrlQuayLai too: still required without VNPay.
    section = {key: value for key, value in national_only("http://127.0.0.1:9").items() if key != "return_url"}
    with pytest.raises(ConfigError, match=r"^\[payment\] return_url: is required$"):
        load_settings(write_toml(tmp_path / "gateway.toml", "sqlite:///gw.db", section), environ={})


# ----------------------------------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(params=BACKENDS)
async def flow(
    tmp_path: Path,
    platforms: tuple[str, PaymentSimulator, NationalPaymentSimulator],
    agency_sim: tuple[str, AgencySimulator],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Flow]:
    """The gateway on loopback with the national-only ``[payment]`` (payments at submission), the national platform
    simulator notifying it, and the agency simulator."""
    url, vnpay, national = platforms
    agency_url, agency = agency_sim
    national.reset()
    agency.reset()
    with open_runtime(request.param, tmp_path, payment=national_only(url, at_submission=True)) as runtime:
        point_agency_at(runtime, agency_url)
        clock = Clock()
        with ServerThread(create_app(runtime, clock=clock)) as server:
            national.notify_url = f"{server.base_url}/api/v1/payments/notify/national"
            try:
                async with httpx.AsyncClient(base_url=server.base_url, trust_env=False, timeout=20) as client:
                    opened = Flow(runtime, clock, client, server.base_url, url, vnpay, agency_url, agency)
                    opened.national = national  # type: ignore[attr-defined]
                    yield opened
            finally:
                national.notify_url = None


async def submitted_and_created_at_platform(flow: Flow) -> dict[str, Any]:
    """A dossier with a fee submitted; its payment created at the national platform by the outbox."""
    body = await flow.submit()
    assert body["payment"]["status"] == "pending" and body["payment"]["url"] is None  # not created there yet
    await flow.drain(lambda: all(p.url for p in flow.rows(Payment)))
    return await flow.get(body["code"])


async def test_a_fee_at_submission_is_paid_through_the_national_platform(flow: Flow) -> None:
    composition = Composition(flow.runtime)
    try:
        assert composition.payment_provider is None  # nothing of VNPay is built
        assert set(composition.other_payment_providers) == {"national"}
        assert "payment-query" in [job.name for job in composition.periodic_jobs()]  # asking the national platform
    finally:
        await composition.aclose()

    view = await submitted_and_created_at_platform(flow)
    [row] = flow.rows(Payment)
    assert row.provider == "national" and row.amount == FEE and row.details["transaction_id"]
    assert view["payment"]["url"].startswith(f"{flow.platform_url}/national/pay/NPP")
    paid = await pay(flow, view["payment"]["url"])
    assert [a["answer"] for a in paid["answers"]] == [{"MaLoi": "00"}]
    after = await flow.get(view["code"])
    assert after["fees"][0]["paid"] is True and after["payment"]["status"] == "paid"
    assert after["history"][-1]["actor"] == "payment:national"

    # A lost notification: the query job of the composition asks the national platform, and never VNPay (a pending
    # VNPay payment left from an earlier configuration is left alone).
    lost = await submitted_and_created_at_platform(flow)
    await pay(flow, lost["payment"]["url"], notify=False)
    with flow.runtime.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == view["code"])).one()
        legacy = {"reference": "LEGACY-VNPAY-1", "amount": FEE, "currency": "VND", "fee_codes": [], "url": None}
        session.add(
            Payment(dossier_id=dossier.id, provider="vnpay", status="pending", **legacy, created_at=row.created_at)
        )
    settings = flow.runtime.settings.payment
    assert settings is not None
    composition = Composition(flow.runtime)
    try:
        counts = await query_pending(
            context_of(flow.runtime),
            settings,
            composition.payment_provider,
            now=flow.clock.advance(minutes=30),
            sign=build_signer(settings),
            others=composition.other_payment_providers,
        )
    finally:
        await composition.aclose()
    assert counts == {"paid": 1}
    assert (await flow.get(lost["code"]))["payment"]["status"] == "paid"
    [legacy_row] = flow.rows(Payment, reference="LEGACY-VNPAY-1")
    assert legacy_row.status == "pending" and legacy_row.last_checked_at is None


async def test_the_vnpay_notification_is_404_and_changes_nothing(flow: Flow) -> None:
    view = await submitted_and_created_at_platform(flow)
    reference = view["payment"]["reference"]
    params = {
        "vnp_TmnCode": "DVCH38",
        "vnp_TxnRef": reference,
        "vnp_Amount": str(FEE * 100),
        "vnp_ResponseCode": "00",
        "vnp_TransactionStatus": "00",
        "vnp_TransactionNo": "14226112",
        "vnp_PayDate": "20261123084512",
    }
    params["vnp_SecureHash"] = sign(params, SECRET)
    before = [(p.reference, p.status, p.url) for p in flow.rows(Payment)]
    for response in (
        await flow.client.post("/api/v1/payments/notify", data=params),
        await flow.client.get("/api/v1/payments/notify", params=params),
    ):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert error["code"] == "not_found" and "not configured" in error["message"]
    # The national platform's endpoint is on: its 404 is the shape the VNPay one now shares.
    assert (await flow.client.post("/api/v1/payments/notify/national", content=b"[1]")).json() == {"MaLoi": "99"}
    assert [(p.reference, p.status, p.url) for p in flow.rows(Payment)] == before
    assert await flow.get(view["code"]) == view


async def test_reconcile_refuses_vnpay_in_one_line_and_reconciles_the_national_platform(
    flow: Flow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = await submitted_and_created_at_platform(flow)
    paid = await pay(flow, view["payment"]["url"])
    config = write_toml(tmp_path / "gateway.toml", flow.runtime.settings.database.url, national_only(flow.platform_url))
    vnpay_file = tmp_path / "vnpay.csv"
    vnpay_file.write_text(",".join(SETTLEMENT_COLUMNS) + "\n", encoding="utf-8")  # a valid, empty VNPay settlement
    capsys.readouterr()
    for argv in ([str(vnpay_file)], [str(vnpay_file), "--provider", "vnpay"], ["--date", "2026-11-23"]):
        status = await asyncio.to_thread(main, ["payment", "reconcile", *argv, "--config", str(config)])
        captured = capsys.readouterr()
        assert status == 2 and captured.out == ""
        assert captured.err.count("\n") == 1 and "--provider vnpay" in captured.err and "not configured" in captured.err

    day = paid["transaction"]["paid_time"][:8]
    national_file = tmp_path / "national.csv"
    national_file.write_text(flow.national.settlement(day), encoding="utf-8")  # type: ignore[attr-defined]
    assert national_file.read_text(encoding="utf-8").startswith(",".join(NATIONAL_COLUMNS))
    argv = ["payment", "reconcile", str(national_file), "--provider", "national", "--json", "--config", str(config)]
    status = await asyncio.to_thread(main, argv)
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["ok"] is True and report["matched"] == 1
