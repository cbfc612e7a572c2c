"""A simulated national payment platform (the wire of :mod:`adapters.payment.national_wire`).

For tests, demos and trials; never for production (state in memory, ``/_sim`` open). ``simulate payment`` serves it
under ``/national`` beside the VNPay-style platform, so ``[payment.national] base_url`` is
``http://127.0.0.1:PORT/national``. It plays the platform's part:

* ``POST /init`` and ``POST /query``: the partner code and ``MaXacThuc`` are checked (``MaLoi`` ``97`` otherwise);
  answers carry their own ``MaXacThuc``. ``init`` answers the payer's URL, ``GET /pay/{MaGiaoDich}`` (a page);
* ``POST /_sim/pay/{reference}`` ``{"status": "00", "amount_vnd": N, "duplicate": B, "notify": B, "forge": B}``
  (every field optional): the payer pays (``00``) or fails (``09``...); the signed notification is posted to
  ``notify_url`` (twice with ``duplicate``, lost with ``"notify": false``, a wrong ``MaXacThuc`` with ``forge``;
  ``amount_vnd`` overrides the amount notified). The answer carries the gateway's answers;
* ``POST /_sim/pay-url`` ``{"url": "<UrlThanhToan>", ...the options above}``: the same, from the payer's URL;
* ``GET /_sim/settlement?date=yyyyMMdd``: the day's settlement CSV; ``GET /_sim/state``, ``POST /_sim/reset``,
  ``POST /_sim/config`` ``{"notify_url"}``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings, default_factory, map_http_errors
from adapters.netguard import AddressPolicy
from adapters.payment.national_wire import (
    INIT_FIELDS,
    INIT_RESPONSE_FIELDS,
    NOTIFICATION_FIELDS,
    QUERY_FIELDS,
    QUERY_RESPONSE_FIELDS,
    SETTLEMENT_COLUMNS,
    checksum,
    format_time,
    signed,
)

__all__ = ["DEFAULT_PARTNER", "DEFAULT_SECRET", "NationalPaymentSimulator", "NationalTransaction", "create_app"]

DEFAULT_PARTNER = "H38DVC"
DEFAULT_SECRET = "NATIONAL-SIMULATOR-SECRET"  # noqa: S105 - the simulator's documented default


@dataclass
class NationalTransaction:
    """A payment as the simulated platform holds it."""

    reference: str
    transaction_id: str
    amount_vnd: int
    dossier_code: str
    return_url: str
    created: str
    status: str = "01"  # 01 pending, 00 paid, anything else failed
    paid_time: str = ""


@dataclass
class NationalPaymentSimulator:
    """The simulated platform's state (in memory)."""

    partner_code: str = DEFAULT_PARTNER
    secret: str = field(default=DEFAULT_SECRET, repr=False)
    notify_url: str | None = None
    factory: ClientFactory = field(default_factory=lambda: default_factory)
    transactions: dict[str, NationalTransaction] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _next_no: int = 50_000_000
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def state(self) -> dict[str, Any]:
        return {
            "transactions": {ref: asdict(txn) for ref, txn in self.transactions.items()},
            "deliveries": self.deliveries,
            "config": {"notify_url": self.notify_url},
        }

    def reset(self) -> None:
        self.transactions.clear()
        self.deliveries.clear()

    def _answer(self, values: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        return signed(values, fields, self.secret)

    def _authentic(self, body: Any, fields: tuple[str, ...]) -> bool:
        return (
            isinstance(body, dict)
            and body.get("MaDoiTac") == self.partner_code
            and body.get("MaXacThuc") == checksum(body, fields, self.secret)
        )

    def init(self, body: Any, pay_base: str) -> dict[str, Any]:
        if not self._authentic(body, INIT_FIELDS):
            return self._answer({"MaLoi": "97", "UrlThanhToan": "", "MaGiaoDich": ""}, INIT_RESPONSE_FIELDS)
        amount, reference = body.get("SoTien"), body.get("MaThamChieu")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0 or not isinstance(reference, str):
            return self._answer({"MaLoi": "99", "UrlThanhToan": "", "MaGiaoDich": ""}, INIT_RESPONSE_FIELDS)
        txn = self.transactions.get(reference)
        if txn is None:
            self._next_no += 1
            txn = NationalTransaction(
                reference=reference,
                transaction_id=f"NPP{self._next_no}",
                amount_vnd=amount,
                dossier_code=str(body.get("MaHoSo", "")),
                return_url=str(body.get("UrlQuayLai", "")),
                created=str(body.get("ThoiGianGD", "")),
            )
            self.transactions[reference] = txn
        url = f"{pay_base}/pay/{txn.transaction_id}"
        values = {"MaLoi": "00", "UrlThanhToan": url, "MaGiaoDich": txn.transaction_id}
        return self._answer(values, INIT_RESPONSE_FIELDS)

    def query(self, body: Any) -> dict[str, Any]:
        empty = {"TrangThai": "", "SoTien": 0, "MaGiaoDich": "", "ThoiGianGD": ""}
        if not self._authentic(body, QUERY_FIELDS):
            return self._answer({"MaLoi": "97", **empty}, QUERY_RESPONSE_FIELDS)
        txn = self.transactions.get(str(body.get("MaThamChieu")))
        if txn is None:
            return self._answer({"MaLoi": "01", **empty}, QUERY_RESPONSE_FIELDS)
        values = {
            "MaLoi": "00",
            "TrangThai": txn.status,
            "SoTien": txn.amount_vnd,
            "MaGiaoDich": txn.transaction_id,
            "ThoiGianGD": txn.paid_time or txn.created,
        }
        return self._answer(values, QUERY_RESPONSE_FIELDS)

    def by_url(self, url: str) -> NationalTransaction | None:
        number = url.rstrip("/").rsplit("/", 1)[-1]
        return next((t for t in self.transactions.values() if t.transaction_id == number), None)

    async def pay(self, txn: NationalTransaction, options: dict[str, Any]) -> dict[str, Any]:
        """The payer pays (or fails); the notification delivered as ``options`` say; what the gateway answered."""
        status = str(options.get("status", "00"))
        txn.status = status
        txn.paid_time = format_time(datetime.now(UTC))
        amount = options.get("amount_vnd", txn.amount_vnd)
        values: dict[str, Any] = {
            "MaThamChieu": txn.reference,
            "MaGiaoDich": txn.transaction_id,
            "SoTien": amount,
            "TrangThai": status,
            "ThoiGianGD": txn.paid_time,
        }
        key = "forged-" + self.secret if options.get("forge") else self.secret
        notification = signed(values, NOTIFICATION_FIELDS, key)
        answers = []
        if options.get("notify", True):
            for _ in range(2 if options.get("duplicate") else 1):
                answers.append(await self.notify(notification))
        return {"transaction": asdict(txn), "notification": notification, "answers": answers}

    async def notify(self, notification: dict[str, Any]) -> dict[str, Any]:
        outcome: dict[str, Any] = {"reference": notification["MaThamChieu"]}
        if self.notify_url is None:
            outcome["error"] = "no notify_url"
        else:
            if self._client is None:
                settings = ClientSettings(base_url=self.notify_url, address_policy=AddressPolicy(allow_private=True))
                self._client = self.factory.client("simulator:national-payment", settings)
            try:
                with map_http_errors("gateway"):
                    response = await self._client.post(self.notify_url, json=notification)
                outcome["status_code"] = response.status_code
                outcome["answer"] = response.json() if response.content else None
            except (UpstreamError, ValueError) as exc:
                outcome["error"] = str(exc)
        self.deliveries.append(outcome)
        return outcome

    def settlement(self, day: str) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SETTLEMENT_COLUMNS)
        for txn in self.transactions.values():
            if txn.status != "01" and txn.paid_time.startswith(day):
                writer.writerow([txn.reference, txn.transaction_id, txn.amount_vnd, txn.status, txn.paid_time])
        return out.getvalue()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None


def create_app(
    *,
    partner_code: str = DEFAULT_PARTNER,
    secret: str = DEFAULT_SECRET,
    notify_url: str | None = None,
    factory: ClientFactory | None = None,
) -> Starlette:
    """The simulated national payment platform (``app.state.simulator``); notifications go to ``notify_url``."""
    sim = NationalPaymentSimulator(
        partner_code=partner_code, secret=secret, notify_url=notify_url, factory=factory or default_factory
    )

    async def init(request: Request) -> Response:
        base = str(request.url).rsplit("/init", 1)[0]
        return JSONResponse(sim.init(await _json(request), base))

    async def query(request: Request) -> Response:
        return JSONResponse(sim.query(await _json(request)))

    async def page(request: Request) -> Response:
        txn = sim.by_url(request.path_params["number"])
        if txn is None:
            return HTMLResponse("<h1>Giao dịch không tồn tại</h1>", status_code=404)
        text = f"Thanh toán {txn.amount_vnd} VND cho hồ sơ {txn.dossier_code} ({txn.reference})"
        return HTMLResponse(f'<!DOCTYPE html><html lang="vi"><meta charset="utf-8"><h1>{html.escape(text)}</h1>')

    async def pay(request: Request) -> Response:
        options = await _json(request)
        txn = sim.transactions.get(request.path_params["reference"])
        if not isinstance(options, dict) or txn is None:
            return JSONResponse({"error": "unknown transaction or bad options"}, status_code=404)
        return JSONResponse(await sim.pay(txn, options))

    async def pay_url(request: Request) -> Response:
        options = await _json(request)
        txn = sim.by_url(str(options.get("url", ""))) if isinstance(options, dict) else None
        if txn is None or not isinstance(options, dict):
            return JSONResponse({"error": "unknown payment URL"}, status_code=404)
        return JSONResponse(await sim.pay(txn, options))

    async def settlement(request: Request) -> Response:
        return PlainTextResponse(sim.settlement(request.query_params.get("date", "")), media_type="text/csv")

    async def state(request: Request) -> Response:
        return JSONResponse(sim.state())

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"reset": True})

    async def config(request: Request) -> Response:
        options = await _json(request)
        url = options.get("notify_url") if isinstance(options, dict) else None
        if not isinstance(options, dict) or (url is not None and not str(url).startswith(("http://", "https://"))):
            return JSONResponse({"error": "invalid_config"}, status_code=400)
        if "notify_url" in options:
            sim.notify_url = url
        return JSONResponse(sim.state()["config"])

    routes = [
        Route("/init", init, methods=["POST"]),
        Route("/query", query, methods=["POST"]),
        Route("/pay/{number}", page, methods=["GET"]),
        Route("/_sim/pay/{reference}", pay, methods=["POST"]),
        Route("/_sim/pay-url", pay_url, methods=["POST"]),
        Route("/_sim/settlement", settlement, methods=["GET"]),
        Route("/_sim/state", state, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/config", config, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.simulator = sim
    return app
