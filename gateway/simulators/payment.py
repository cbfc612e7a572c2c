"""A simulated VNPay-style payment platform (the protocol of :mod:`adapters.payment.vnpay`).

For tests, demos and trials; never for production (state in memory, ``/_sim`` open). It plays the provider's part:

* ``GET /paymentv2/vpcpay.html?<signed vnp_* params>``: the payment page. The signature, merchant code, command and
  amount are checked (a bad signature gets an error page, as VNPay shows one); the transaction is then pending;
* ``POST /_sim/pay/{reference}`` ``{"response_code": "00", "amount_vnd": N, "delay_seconds": D, "duplicate": B,
  "notify": B}`` (every field optional): the payer pays (``00``) or fails (``24`` cancelled, ``51`` insufficient
  funds...); the signed notification (IPN) is then delivered by ``GET`` to ``notify_url``, after ``delay_seconds``
  (in the background) and twice with ``duplicate``; ``"notify": false`` loses it (the merchant must query);
  ``amount_vnd`` overrides the amount notified (to test mismatches). The answer carries the signed return URL the
  payer's browser would be sent to and, without delay, the IPN answers. A form post from the payment page redirects
  the browser to that return URL;
* ``POST /_sim/pay-url`` ``{"url": "<a payment URL the merchant built>", ...the options above}``: the payer opens the
  URL (checked as the payment page checks it) and pays at once: one call for tests and demos;
* ``POST /merchant_webapi/api/transaction``: ``querydr``, signed both ways (``|``-joined fields);
* ``GET /_sim/settlement?date=yyyyMMdd``: the day's settlement CSV (transactions finished that day, GMT+7);
* ``GET /_sim/state``, ``POST /_sim/reset``, ``POST /_sim/config`` ``{"notify_url", "ipn_delay_seconds",
  "duplicate_ipn"}``; ``POST /_sim/transactions`` adds a finished transaction directly (for reconciliation demos);
* under ``/national``: the national payment platform (:mod:`gateway.simulators.national_payment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hmac
import html
import io
import json
import logging
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings, default_factory, map_http_errors
from adapters.netguard import AddressPolicy
from adapters.payment import InvalidSignature, verify_signature
from adapters.payment.vnpay import (
    HASH_PARAM,
    QUERY_REQUEST_FIELDS,
    QUERY_RESPONSE_FIELDS,
    SETTLEMENT_COLUMNS,
    VNPAY_TIME,
    format_time,
    pipe_signature,
    sign,
    signed_query,
)
from gateway.simulators.national_payment import create_app as create_national

__all__ = ["PAYMENT_PAGE_PATH", "QUERY_PATH", "PaymentSimulator", "Transaction", "create_app"]

logger = logging.getLogger(__name__)

PAYMENT_PAGE_PATH = "/paymentv2/vpcpay.html"
QUERY_PATH = "/merchant_webapi/api/transaction"
_BANK = "NCB"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Transaction:
    """A payment as the simulated provider holds it."""

    reference: str
    amount_vnd: int
    order_info: str
    return_url: str
    create_date: str
    status: str = "pending"  # pending | paid | failed
    response_code: str | None = None
    transaction_no: str | None = None
    pay_date: str | None = None
    bank_code: str = _BANK

    @property
    def transaction_status(self) -> str:
        return {"paid": "00", "pending": "01"}.get(self.status, "02")


@dataclass
class PaymentSimulator:
    """The simulated provider's state (in memory)."""

    merchant_code: str = "DVCH38"
    secret: str = field(default="SIMULATOR-SECRET", repr=False)
    notify_url: str | None = None
    ipn_delay_seconds: float = 0.0
    duplicate_ipn: bool = False
    factory: ClientFactory = field(default_factory=lambda: default_factory)
    transactions: dict[str, Transaction] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)
    _next_no: int = 14_000_000
    _client: httpx.AsyncClient | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[list[dict[str, Any]]]] = field(default_factory=set, repr=False)

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.transactions.clear()
        self.deliveries.clear()
        self.counters.clear()

    def state(self) -> dict[str, Any]:
        return {
            "transactions": {ref: asdict(txn) for ref, txn in self.transactions.items()},
            "deliveries": self.deliveries,
            "counters": dict(self.counters),
            "config": {
                "notify_url": self.notify_url,
                "ipn_delay_seconds": self.ipn_delay_seconds,
                "duplicate_ipn": self.duplicate_ipn,
            },
        }

    def configure(self, changes: Mapping[str, Any]) -> None:
        for name, value in changes.items():
            if name == "notify_url":
                if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
                    raise ValueError("notify_url must be an http(s) URL or null")
                self.notify_url = value  # the client posts to absolute URLs: it serves the new one too
            elif name == "ipn_delay_seconds":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError("ipn_delay_seconds must be a non-negative number")
                self.ipn_delay_seconds = float(value)
            elif name == "duplicate_ipn":
                if not isinstance(value, bool):
                    raise ValueError("duplicate_ipn must be a boolean")
                self.duplicate_ipn = value
            else:
                raise ValueError(f"unknown setting {name!r}")

    # -- payment page --------------------------------------------------------------------------------------------------

    def open_payment(self, params: Mapping[str, str]) -> tuple[int, str, Transaction | None]:
        """Check a payment URL's parameters: ``(status, message, transaction)``."""
        self.counters["payment_pages"] += 1
        try:
            verify_signature(params, self.secret)
        except InvalidSignature as exc:
            self.counters["bad_signatures"] += 1
            return 400, f"Sai chữ ký (97): {exc}", None
        if params.get("vnp_TmnCode") != self.merchant_code:
            return 400, "Website chưa được phê duyệt (02)", None
        if params.get("vnp_Command") != "pay" or params.get("vnp_CurrCode", "VND") != "VND":
            return 400, "Yêu cầu không hợp lệ (03)", None
        amount = params.get("vnp_Amount", "")
        reference = params.get("vnp_TxnRef", "")
        if not amount.isdigit() or int(amount) % 100 or int(amount) == 0 or not reference:
            return 400, "Số tiền hoặc mã giao dịch không hợp lệ (03)", None
        known = self.transactions.get(reference)
        if known is not None and known.status != "pending":
            return 409, "Giao dịch đã tồn tại (94)", None
        txn = Transaction(
            reference=reference,
            amount_vnd=int(amount) // 100,
            order_info=params.get("vnp_OrderInfo", ""),
            return_url=params.get("vnp_ReturnUrl", ""),
            create_date=params.get("vnp_CreateDate", format_time(_now())),
        )
        self.transactions[reference] = txn
        return 200, "OK", txn

    # -- paying and notifying ------------------------------------------------------------------------------------------

    def pay(self, reference: str, response_code: str = "00") -> Transaction | None:
        txn = self.transactions.get(reference)
        if txn is None or txn.status != "pending":
            return None
        self._next_no += 1
        txn.transaction_no = str(self._next_no)
        txn.response_code = response_code
        txn.status = "paid" if response_code == "00" else "failed"
        txn.pay_date = format_time(_now())
        self.counters["paid" if txn.status == "paid" else "failed"] += 1
        return txn

    def result_params(self, txn: Transaction, amount_vnd: int | None = None) -> dict[str, str]:
        """The signed notification / return parameters of a finished transaction."""
        params = {
            "vnp_Amount": str((txn.amount_vnd if amount_vnd is None else amount_vnd) * 100),
            "vnp_BankCode": txn.bank_code,
            "vnp_BankTranNo": f"VNP{txn.transaction_no}",
            "vnp_CardType": "ATM",
            "vnp_OrderInfo": txn.order_info,
            "vnp_PayDate": txn.pay_date or "",
            "vnp_ResponseCode": txn.response_code or "99",
            "vnp_TmnCode": self.merchant_code,
            "vnp_TransactionNo": txn.transaction_no or "0",
            "vnp_TransactionStatus": txn.transaction_status,
            "vnp_TxnRef": txn.reference,
        }
        params[HASH_PARAM] = sign(params, self.secret)
        return params

    def return_url(self, txn: Transaction, params: Mapping[str, str]) -> str | None:
        if not txn.return_url:
            return None
        separator = "&" if urllib.parse.urlsplit(txn.return_url).query else "?"
        unsigned = {k: v for k, v in params.items() if k != HASH_PARAM}
        return f"{txn.return_url}{separator}{signed_query(unsigned, self.secret)}"

    async def deliver(self, params: Mapping[str, str], *, copies: int, delay: float) -> list[dict[str, Any]]:
        """Send the IPN ``copies`` times to ``notify_url`` after ``delay`` seconds; what each answer was."""
        if delay > 0:
            await asyncio.sleep(delay)
        outcomes = []
        for attempt in range(1, copies + 1):
            outcomes.append(await self._deliver_once(params, attempt))
        return outcomes

    async def _deliver_once(self, params: Mapping[str, str], attempt: int) -> dict[str, Any]:
        outcome: dict[str, Any] = {"reference": params.get("vnp_TxnRef"), "attempt": attempt}
        url = self.notify_url
        if url is None:
            outcome["error"] = "no notify_url"
            self.deliveries.append(outcome)
            return outcome
        if self._client is None:
            settings = ClientSettings(base_url=url, address_policy=AddressPolicy(allow_private=True))
            self._client = self.factory.client("simulator:payment-ipn", settings)
        self.counters["ipn_sent"] += 1
        try:
            with map_http_errors("gateway"):
                response = await self._client.get(url, params=dict(params))
            outcome["status_code"] = response.status_code
            try:
                outcome["answer"] = response.json()
            except ValueError:
                outcome["answer"] = None
        except UpstreamError as exc:
            outcome["error"] = str(exc)
        self.deliveries.append(outcome)
        return outcome

    def schedule(self, params: Mapping[str, str], *, copies: int, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self.deliver(params, copies=copies, delay=delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- query and settlement ------------------------------------------------------------------------------------------

    def query(self, body: Any) -> dict[str, Any]:
        self.counters["queries"] += 1
        answer: dict[str, Any] = {
            "vnp_ResponseId": _now().strftime("%Y%m%d%H%M%S%f"),
            "vnp_Command": "querydr",
            "vnp_TmnCode": self.merchant_code,
        }
        if not isinstance(body, dict) or not all(isinstance(body.get(name), str) for name in QUERY_REQUEST_FIELDS):
            answer.update(vnp_ResponseCode="03", vnp_Message="Invalid request")
        elif not isinstance(body.get(HASH_PARAM), str) or not hmac.compare_digest(
            body[HASH_PARAM].lower().encode(), pipe_signature(body, QUERY_REQUEST_FIELDS, self.secret).encode()
        ):
            answer.update(vnp_ResponseCode="97", vnp_Message="Invalid checksum")
        elif body.get("vnp_TmnCode") != self.merchant_code:
            answer.update(vnp_ResponseCode="02", vnp_Message="Merchant is not valid")
        else:
            txn = self.transactions.get(body["vnp_TxnRef"])
            if txn is None:
                answer.update(vnp_ResponseCode="91", vnp_Message="Transaction not found", vnp_TxnRef=body["vnp_TxnRef"])
            else:
                answer.update(
                    vnp_ResponseCode="00",
                    vnp_Message="QueryDR Success",
                    vnp_TxnRef=txn.reference,
                    vnp_Amount=str(txn.amount_vnd * 100),
                    vnp_BankCode=txn.bank_code,
                    vnp_PayDate=txn.pay_date or "",
                    vnp_TransactionNo=txn.transaction_no or "",
                    vnp_TransactionType="01",
                    vnp_TransactionStatus=txn.transaction_status,
                    vnp_OrderInfo=txn.order_info,
                    vnp_PromotionCode="",
                    vnp_PromotionAmount="",
                )
        answer[HASH_PARAM] = pipe_signature(answer, QUERY_RESPONSE_FIELDS, self.secret)
        return answer

    def settlement(self, day: str) -> str:
        """The settlement CSV of ``day`` (``yyyyMMdd``, GMT+7): transactions finished that day."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(SETTLEMENT_COLUMNS)
        for txn in self.transactions.values():
            if txn.status == "pending" or not (txn.pay_date or "").startswith(day):
                continue
            row = {
                "vnp_TxnRef": txn.reference,
                "vnp_TransactionNo": txn.transaction_no or "",
                "vnp_Amount": str(txn.amount_vnd * 100),
                "vnp_TransactionStatus": txn.transaction_status,
                "vnp_PayDate": txn.pay_date or "",
                "vnp_BankCode": txn.bank_code,
            }
            writer.writerow([row[name] for name in SETTLEMENT_COLUMNS])
        return out.getvalue()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><title>Cổng thanh toán (mô phỏng)</title></head>
<body><h1>Thanh toán phí, lệ phí</h1>
<p>Mã giao dịch: <b>{reference}</b></p><p>Nội dung: {info}</p><p>Số tiền: <b>{amount} VND</b></p>
<form method="post" action="/_sim/pay/{reference_q}"><button type="submit">Thanh toán</button></form>
<form method="post" action="/_sim/pay/{reference_q}?response_code=24"><button type="submit">Hủy</button></form>
</body></html>"""


def _error_page(status: int, message: str) -> HTMLResponse:
    body = f'<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8"></head><body><h1>{html.escape(message)}</h1>'
    return HTMLResponse(body + "</body></html>", status_code=status)


class _Handlers:
    """The routes' endpoints, over a :class:`PaymentSimulator`."""

    def __init__(self, sim: PaymentSimulator) -> None:
        self.sim = sim

    async def payment_page(self, request: Request) -> Response:
        params = dict(request.query_params)
        status, message, txn = self.sim.open_payment(params)
        if txn is None:
            return _error_page(status, message)
        page = _PAGE.format(
            reference=html.escape(txn.reference),
            reference_q=urllib.parse.quote(txn.reference, safe=""),
            info=html.escape(txn.order_info),
            amount=f"{txn.amount_vnd:,}".replace(",", "."),
        )
        return HTMLResponse(page)

    async def pay(self, request: Request) -> Response:
        reference = request.path_params["reference"]
        is_form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        options: dict[str, Any] = dict(request.query_params)
        if not is_form:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                body = None
            if not isinstance(body, dict):
                return JSONResponse({"error": "invalid_json"}, status_code=400)
            options.update(body)
        return await self._pay(reference, options, redirect=is_form)

    async def _pay(self, reference: str, options: dict[str, Any], *, redirect: bool = False) -> Response:
        code = options.get("response_code", "00")
        amount = options.get("amount_vnd")
        delay = options.get("delay_seconds", self.sim.ipn_delay_seconds)
        duplicate = options.get("duplicate", self.sim.duplicate_ipn)
        notify = options.get("notify", True)
        if (
            not isinstance(code, str)
            or not (len(code) == 2 and code.isdigit())
            or (amount is not None and (isinstance(amount, bool) or not isinstance(amount, int) or amount < 0))
            or isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or delay < 0
            or not isinstance(duplicate, bool)
            or not isinstance(notify, bool)
        ):
            return JSONResponse({"error": "invalid_options"}, status_code=400)
        if reference not in self.sim.transactions:
            return JSONResponse({"error": "not_found", "reference": reference}, status_code=404)
        txn = self.sim.pay(reference, code)
        if txn is None:
            return JSONResponse({"error": "already_finished", "reference": reference}, status_code=409)
        params = self.sim.result_params(txn, amount)
        copies = 2 if duplicate else 1
        answer: dict[str, Any] = {
            "reference": reference,
            "status": txn.status,
            "transaction_no": txn.transaction_no,
            "return_url": self.sim.return_url(txn, params),
        }
        if not notify:
            self.sim.counters["ipn_lost"] += 1
            answer["ipn"] = "lost"
        elif delay > 0:
            self.sim.schedule(params, copies=copies, delay=float(delay))
            answer["ipn"] = "scheduled"
        else:
            answer["ipn"] = await self.sim.deliver(params, copies=copies, delay=0)
        if redirect and answer["return_url"]:
            return RedirectResponse(answer["return_url"], status_code=303)
        return JSONResponse(answer)

    async def pay_url(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return JSONResponse({"error": "invalid_request", "detail": 'expected {"url": ...}'}, status_code=400)
        query = urllib.parse.urlsplit(body.pop("url")).query
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        status, message, txn = self.sim.open_payment(params)
        if txn is None:
            return JSONResponse({"error": "payment_refused", "detail": message}, status_code=status)
        return await self._pay(txn.reference, body)

    async def query(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        return JSONResponse(self.sim.query(body))

    async def settlement(self, request: Request) -> Response:
        day = request.query_params.get("date") or datetime.now(VNPAY_TIME).strftime("%Y%m%d")
        if not (len(day) == 8 and day.isdigit()):
            return JSONResponse({"error": "date must be yyyyMMdd"}, status_code=400)
        return PlainTextResponse(self.sim.settlement(day), media_type="text/csv; charset=utf-8")

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})

    async def config(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            self.sim.configure(changes)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_config", "detail": str(exc)}, status_code=400)
        return JSONResponse(self.sim.state()["config"])

    async def add_transaction(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            amount = body["amount_vnd"]
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise ValueError("amount_vnd must be a positive integer")
            status = body.get("status", "paid")
            if status not in ("paid", "failed"):
                raise ValueError("status must be paid or failed")
            txn = Transaction(
                reference=str(body["reference"]),
                amount_vnd=amount,
                order_info=str(body.get("order_info", "")),
                return_url="",
                create_date=format_time(_now()),
            )
        except (ValueError, KeyError) as exc:
            return JSONResponse({"error": "invalid_transaction", "detail": str(exc)}, status_code=400)
        self.sim.transactions[txn.reference] = txn
        self.sim.pay(txn.reference, "00" if status == "paid" else "02")
        return JSONResponse(asdict(txn), status_code=201)


def create_app(
    *,
    merchant_code: str = "DVCH38",
    secret: str = "SIMULATOR-SECRET",  # noqa: S107 - the simulator's demo secret
    notify_url: str | None = None,
    ipn_delay_seconds: float = 0.0,
    duplicate_ipn: bool = False,
    factory: ClientFactory | None = None,
    national_notify_url: str | None = None,
) -> ASGIApp:
    """The simulated payment platform as an ASGI app; its :class:`PaymentSimulator` is ``app.state.simulator``.

    :param merchant_code: the ``vnp_TmnCode`` it serves, with its hash ``secret``.
    :param notify_url: where IPNs go (the gateway's ``/api/v1/payments/notify``); settable later via ``/_sim/config``.
    :param ipn_delay_seconds: delay before each IPN delivery (then delivered in the background).
    :param duplicate_ipn: deliver every IPN twice.
    :param factory: HTTP client factory for the IPNs (the process-wide one by default).
    :param national_notify_url: where the national payment platform served under ``/national``
        (:mod:`gateway.simulators.national_payment`, its simulator ``app.state.national``) posts its notifications
        (the gateway's ``/api/v1/payments/notify/national``).
    """
    national = create_national(notify_url=national_notify_url, factory=factory)
    sim = PaymentSimulator(
        merchant_code=merchant_code,
        secret=secret,
        notify_url=notify_url,
        ipn_delay_seconds=ipn_delay_seconds,
        duplicate_ipn=duplicate_ipn,
        factory=factory or default_factory,
    )

    handlers = _Handlers(sim)
    routes = [
        Route(PAYMENT_PAGE_PATH, handlers.payment_page, methods=["GET"]),
        Route("/_sim/pay/{reference}", handlers.pay, methods=["POST"]),
        Route("/_sim/pay-url", handlers.pay_url, methods=["POST"]),
        Route(QUERY_PATH, handlers.query, methods=["POST"]),
        Route("/_sim/settlement", handlers.settlement, methods=["GET"]),
        Route("/_sim/state", handlers.state, methods=["GET"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
        Route("/_sim/config", handlers.config, methods=["POST"]),
        Route("/_sim/transactions", handlers.add_transaction, methods=["POST"]),
        Mount("/national", app=national),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sim.aclose()
            await national.state.simulator.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    app.state.national = national.state.simulator
    return app
