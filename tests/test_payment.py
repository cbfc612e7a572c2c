"""The VNPay-style payment provider: signatures, amounts, IPN answers, reconciliation, and the simulated provider."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import AuthError, BadResponseError, TransientError
from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import AddressPolicy
from adapters.payment import (
    InvalidNotification,
    InvalidSignature,
    IpnCode,
    LocalPayment,
    Notification,
    PaymentProvider,
    PaymentState,
    SettlementFormatError,
    VNPayProvider,
    canonical_query,
    decide_ipn,
    ipn_answer,
    parse_settlement,
    sign,
    verify_signature,
)
from adapters.payment.vnpay import QUERY_RESPONSE_FIELDS, VNPAY_TIME, pipe_signature
from gateway.simulators.payment import PAYMENT_PAGE_PATH, PaymentSimulator, create_app
from tests.servers import ServerThread, admin_get, admin_post

SECRET = "ZXCVBNMASDFGHJKLQWERTYUIOP123456"
MERCHANT = "DVCH38TM"
LOCAL = AddressPolicy(allow_private=True)
NOW = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 08:30 in Vietnam
REF = "000.00.23.H38-261123-0001"


def provider(client: httpx.AsyncClient | None = None, **overrides: Any) -> VNPayProvider:
    options: dict[str, Any] = {
        "merchant_code": MERCHANT,
        "secret": SECRET,
        "payment_url": "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html",
        "clock": lambda: NOW,
    }
    options.update(overrides)
    return VNPayProvider(client, **options)


def independent_hash(params: dict[str, str], secret: str = SECRET) -> str:
    """The signature computed here, independently of the module: sorted vnp_* params, quote_plus, HMAC-SHA512."""
    pairs = sorted((k, v) for k, v in params.items() if k.startswith("vnp_") and k not in ("vnp_SecureHash",))
    message = "&".join(f"{urllib.parse.quote_plus(k)}={urllib.parse.quote_plus(v)}" for k, v in pairs)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha512).hexdigest()


def ipn_params(**overrides: str) -> dict[str, str]:
    params = {
        "vnp_Amount": "15000000",
        "vnp_BankCode": "NCB",
        "vnp_BankTranNo": "VNP14226112",
        "vnp_CardType": "ATM",
        "vnp_OrderInfo": "Thanh toan le phi ho so 000.00.23.H38-261123-0001",
        "vnp_PayDate": "20261123084512",
        "vnp_ResponseCode": "00",
        "vnp_TmnCode": MERCHANT,
        "vnp_TransactionNo": "14226112",
        "vnp_TransactionStatus": "00",
        "vnp_TxnRef": REF,
    }
    params.update(overrides)
    params["vnp_SecureHash"] = independent_hash(params)
    return params


# -- Signatures --------------------------------------------------------------------------------------------------------


def test_signature_matches_a_worked_example() -> None:
    params = {
        "vnp_TxnRef": REF,
        "vnp_Amount": "15000000",
        "vnp_OrderInfo": "Le phi cap phep: nha o",
        "vnp_ReturnUrl": "https://dichvucong.example.vn/thanh-toan/ket-qua?ma=1&b=2",
        "vnp_Version": "2.1.0",
        "other": "not signed",
    }
    expected_string = (
        "vnp_Amount=15000000"
        "&vnp_OrderInfo=Le+phi+cap+phep%3A+nha+o"
        "&vnp_ReturnUrl=https%3A%2F%2Fdichvucong.example.vn%2Fthanh-toan%2Fket-qua%3Fma%3D1%26b%3D2"
        f"&vnp_TxnRef={REF}"
        "&vnp_Version=2.1.0"
    )
    assert canonical_query(params) == expected_string
    expected = hmac.new(SECRET.encode(), expected_string.encode(), hashlib.sha512).hexdigest()
    assert sign(params, SECRET) == expected == independent_hash(params)
    # The hash parameters themselves are never signed.
    assert sign({**params, "vnp_SecureHash": "ab", "vnp_SecureHashType": "HmacSHA512"}, SECRET) == expected
    verify_signature({**params, "vnp_SecureHash": expected}, SECRET)
    verify_signature({**params, "vnp_SecureHash": expected.upper(), "vnp_SecureHashType": "HmacSHA512"}, SECRET)


def test_notification_is_verified() -> None:
    notification = provider().verify_notification(ipn_params())
    assert isinstance(notification, Notification)
    assert notification.reference == REF
    assert notification.amount_vnd == 150_000
    assert notification.success and notification.state is PaymentState.PAID
    assert notification.transaction_no == "14226112" and notification.bank_code == "NCB"
    assert notification.paid_at == datetime(2026, 11, 23, 1, 45, 12, tzinfo=UTC)
    failed = provider().verify_notification(ipn_params(vnp_ResponseCode="24", vnp_TransactionStatus="02"))
    assert not failed.success and failed.state is PaymentState.FAILED
    # Both codes must be 00.
    assert not provider().verify_notification(ipn_params(vnp_TransactionStatus="01")).success


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(vnp_Amount="1500000000"),  # tampered amount
        lambda p: p.update(vnp_ResponseCode="24"),  # tampered outcome
        lambda p: p.update(vnp_Extra="1"),  # an added vnp_ parameter
        lambda p: p.pop("vnp_BankCode"),  # a removed parameter
        lambda p: p.pop("vnp_SecureHash"),  # missing hash
        lambda p: p.update(vnp_SecureHash=""),
        lambda p: p.update(vnp_SecureHash="not-hex"),
        lambda p: p.update(vnp_SecureHash=p["vnp_SecureHash"][:-2]),
        lambda p: p.update(vnp_SecureHashType="SHA256"),
    ],
)
def test_tampered_notifications_are_refused(mutate: Any) -> None:
    params = ipn_params()
    mutate(params)
    with pytest.raises(InvalidSignature):
        provider().verify_notification(params)


def test_wrong_secret_and_other_merchant_are_refused() -> None:
    with pytest.raises(InvalidSignature):
        provider(secret="another-secret").verify_notification(ipn_params())
    with pytest.raises(InvalidSignature, match="another merchant"):
        provider().verify_notification(ipn_params(vnp_TmnCode="OTHER"))


@pytest.mark.parametrize(
    "overrides",
    [{"vnp_Amount": "150000.00"}, {"vnp_Amount": "15000050"}, {"vnp_Amount": "-100"}, {"vnp_TxnRef": ""}],
)
def test_signed_but_unreadable_notifications(overrides: dict[str, str]) -> None:
    with pytest.raises(InvalidNotification):
        provider().verify_notification(ipn_params(**overrides))


_char = st.characters(blacklist_categories=("Cs",))
_key = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
_params = st.dictionaries(_key.map(lambda k: f"vnp_{k}"), st.text(alphabet=_char, max_size=40), min_size=1, max_size=8)
_params = _params.filter(lambda p: not {"vnp_SecureHash", "vnp_SecureHashType"} & set(p))


@given(params=_params, secret=st.text(alphabet=_char, min_size=1, max_size=40))
def test_any_signed_params_verify(params: dict[str, str], secret: str) -> None:
    verify_signature({**params, "vnp_SecureHash": sign(params, secret)}, secret)
    assert sign(params, secret) == independent_hash(params, secret)


@given(params=_params, data=st.data())
def test_any_single_character_change_is_refused(params: dict[str, str], data: st.DataObject) -> None:
    signed = {**params, "vnp_SecureHash": sign(params, SECRET)}
    key = data.draw(st.sampled_from(sorted(signed)))
    value = signed[key]
    if value:
        index = data.draw(st.integers(0, len(value) - 1))
        alphabet = st.sampled_from("0123456789abcdef") if key == "vnp_SecureHash" else _char
        new_char = data.draw(alphabet.filter(lambda c: c != value[index]))
        changed = value[:index] + new_char + value[index + 1 :]
    else:
        changed = data.draw(_char)  # an empty value gains a character
    with pytest.raises(InvalidSignature):
        verify_signature({**signed, key: changed}, SECRET)


@given(params=_params, data=st.data())
def test_any_single_character_change_in_a_name_is_refused(params: dict[str, str], data: st.DataObject) -> None:
    signed = {**params, "vnp_SecureHash": sign(params, SECRET)}
    key = data.draw(st.sampled_from(sorted(params)))
    index = data.draw(st.integers(0, len(key) - 1))
    new_char = data.draw(st.characters(min_codepoint=33, max_codepoint=0x2FF))
    renamed = key[:index] + new_char + key[index + 1 :]
    assume(renamed != key and renamed not in signed and renamed not in ("vnp_SecureHashType",))
    tampered = {(renamed if k == key else k): v for k, v in signed.items()}
    with pytest.raises(InvalidSignature):
        verify_signature(tampered, SECRET)


# -- Payments, amounts -------------------------------------------------------------------------------------------------


async def test_payment_url_carries_amount_times_100_and_a_valid_signature() -> None:
    request = await provider().create_payment(
        REF, 150_000, "Lệ phí cấp giấy phép xây dựng: hồ sơ số 1", "https://dvc.example.vn/ket-qua", "203.0.113.9"
    )
    assert request.reference == REF
    url = urllib.parse.urlsplit(request.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"
    params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    assert params["vnp_Amount"] == "15000000"
    assert params["vnp_TxnRef"] == REF
    assert params["vnp_TmnCode"] == MERCHANT
    assert params["vnp_Command"] == "pay" and params["vnp_CurrCode"] == "VND" and params["vnp_Version"] == "2.1.0"
    assert params["vnp_OrderInfo"] == "Le phi cap giay phep xay dung: ho so so 1"  # no diacritics
    assert params["vnp_CreateDate"] == "20261123083000" and params["vnp_ExpireDate"] == "20261123084500"
    assert params["vnp_IpAddr"] == "203.0.113.9"
    assert params["vnp_SecureHash"] == independent_hash(params)
    assert request.expires_at == datetime(2026, 11, 23, 1, 45, tzinfo=UTC)


@pytest.mark.parametrize("amount", [150000.0, True, Decimal(150000), "150000"])
async def test_amounts_must_be_int_vnd(amount: Any) -> None:
    with pytest.raises(TypeError):
        await provider().create_payment(REF, amount, "Le phi", "https://dvc.example.vn/kq", "203.0.113.9")


@pytest.mark.parametrize("amount", [-1, 0, 10**9])
async def test_amounts_must_be_positive_and_below_the_provider_limit(amount: int) -> None:
    with pytest.raises(ValueError):
        await provider().create_payment(REF, amount, "Le phi", "https://dvc.example.vn/kq", "203.0.113.9")


@pytest.mark.parametrize(
    "overrides",
    [
        {"reference": "có dấu"},
        {"reference": ""},
        {"reference": "x" * 101},
        {"description": "!!!"},
        {"return_url": "javascript:alert(1)"},
        {"client_ip": "not-an-ip"},
    ],
)
async def test_payment_arguments_are_checked(overrides: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {
        "reference": REF,
        "amount_vnd": 150_000,
        "description": "Le phi",
        "return_url": "https://dvc.example.vn/kq",
        "client_ip": "203.0.113.9",
    }
    arguments.update(overrides)
    with pytest.raises(ValueError):
        await provider().create_payment(**arguments)


def test_the_provider_satisfies_the_port_and_hides_its_secret() -> None:
    vnpay = provider()
    assert isinstance(vnpay, PaymentProvider)
    assert SECRET not in repr(vnpay) and "***" in repr(vnpay)


# -- IPN answers -------------------------------------------------------------------------------------------------------


def test_ipn_answers() -> None:
    assert ipn_answer("00") == {"RspCode": "00", "Message": "Confirm Success"}
    assert ipn_answer(IpnCode.UNKNOWN_REFERENCE) == {"RspCode": "01", "Message": "Order not found"}
    assert ipn_answer("02")["RspCode"] == "02"
    assert ipn_answer("04")["RspCode"] == "04"
    assert ipn_answer("97") == {"RspCode": "97", "Message": "Invalid signature"}
    assert ipn_answer("99")["RspCode"] == "99"
    with pytest.raises(ValueError):
        ipn_answer("05")


def test_ipn_decisions() -> None:
    notification = provider().verify_notification(ipn_params())
    assert decide_ipn(notification, None) is IpnCode.UNKNOWN_REFERENCE
    assert decide_ipn(notification, LocalPayment(REF, 150_000, PaymentState.PENDING)) is IpnCode.OK
    assert decide_ipn(notification, LocalPayment(REF, 200_000, PaymentState.PENDING)) is IpnCode.AMOUNT_MISMATCH
    assert decide_ipn(notification, LocalPayment(REF, 150_000, PaymentState.PAID)) is IpnCode.ALREADY_CONFIRMED
    assert decide_ipn(notification, LocalPayment(REF, 150_000, "failed")) is IpnCode.ALREADY_CONFIRMED  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LocalPayment(REF, 150_000.0, PaymentState.PENDING)  # type: ignore[arg-type]


# -- Reconciliation ----------------------------------------------------------------------------------------------------

SETTLEMENT = (
    "\ufeffvnp_TxnRef,vnp_TransactionNo,vnp_Amount,vnp_TransactionStatus,vnp_PayDate,vnp_BankCode\r\n"
    "REF-A,1001,15000000,00,20261123084512,NCB\r\n"
    "REF-B,1002,5000000,00,20261123090000,NCB\r\n"  # we hold 60 000, the provider 50 000
    "REF-C,1003,2000000,00,20261123091500,VCB\r\n"  # paid, but our IPN was lost: we hold it pending
    "REF-X,1004,10000000,00,20261123100000,NCB\r\n"  # the provider has it, we do not
    "\r\n"
    "REF-F,1005,3000000,02,20261123110000,NCB\r\n"  # failed at the provider, failed with us
)


def test_reconciliation_reports_every_difference() -> None:
    local = [
        LocalPayment("REF-A", 150_000, PaymentState.PAID),
        LocalPayment("REF-B", 60_000, PaymentState.PAID),
        LocalPayment("REF-C", 20_000, PaymentState.PENDING),
        LocalPayment("REF-E", 70_000, PaymentState.PAID),  # we hold it paid, the provider has no record of it
        LocalPayment("REF-P", 10_000, PaymentState.PENDING),  # never paid: not a difference
        LocalPayment("REF-F", 30_000, PaymentState.FAILED),
    ]
    report = provider().reconcile(SETTLEMENT, local)
    assert not report.ok
    assert report.matched == ["REF-A", "REF-F"]
    assert [(m.reference, m.local_vnd, m.provider_vnd) for m in report.amount_mismatches] == [("REF-B", 60_000, 50_000)]
    assert [(m.reference, m.local, m.provider) for m in report.status_mismatches] == [
        ("REF-C", PaymentState.PENDING, PaymentState.PAID)
    ]
    assert [(row.reference, row.amount_vnd, row.line) for row in report.missing_locally] == [("REF-X", 100_000, 5)]
    assert [p.reference for p in report.missing_at_provider] == ["REF-E"]
    assert report.duplicates == []


def test_reconciliation_of_a_clean_day_and_duplicates() -> None:
    rows = parse_settlement(SETTLEMENT)
    assert [r.amount_vnd for r in rows] == [150_000, 50_000, 20_000, 100_000, 30_000]
    assert all(isinstance(r.amount_vnd, int) for r in rows)
    assert rows[0].paid_at == datetime(2026, 11, 23, 1, 45, 12, tzinfo=UTC)
    local = [LocalPayment(r.reference, r.amount_vnd, r.state) for r in rows]
    assert provider().reconcile(SETTLEMENT, local).ok
    doubled = SETTLEMENT + "REF-A,1001,15000000,00,20261123084512,NCB\r\n"
    assert [r.reference for r in provider().reconcile(doubled, local).duplicates] == ["REF-A"]


@pytest.mark.parametrize(
    "text",
    [
        "vnp_TxnRef,vnp_Amount\r\nA,100\r\n",  # no status column
        "vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\nA,1500.50,00\r\n",  # not an integer
        "vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\nA,150050,00\r\n",  # not whole VND × 100
        "vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\nA,1e5,00\r\n",
        "vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\n,100,00\r\n",  # no reference
        "vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\nA,100,00,extra\r\n",
        'vnp_TxnRef,vnp_Amount,vnp_TransactionStatus\r\n"A,100,00\r\n',  # unterminated quote
    ],
)
def test_bad_settlement_files(text: str) -> None:
    with pytest.raises(SettlementFormatError):
        parse_settlement(text)


# -- Against the simulated provider, with a local IPN receiver ---------------------------------------------------------


class Receiver:
    """The gateway's side of the IPN, as a portal backend would write it with this adapter."""

    def __init__(self, vnpay: VNPayProvider) -> None:
        self.vnpay = vnpay
        self.payments: dict[str, LocalPayment] = {}
        self.notifications: list[Notification] = []
        self.answers: list[str] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/api/v1/payments/notify", self.notify, methods=["GET", "POST"])])

    async def notify(self, request: Request) -> JSONResponse:
        params = dict(request.query_params)
        try:
            notification = self.vnpay.verify_notification(params)
        except InvalidSignature:
            code = IpnCode.BAD_SIGNATURE
        except InvalidNotification:
            code = IpnCode.OTHER
        else:
            with self.lock:
                self.notifications.append(notification)
                local = self.payments.get(notification.reference)
                code = decide_ipn(notification, local)
                if code is IpnCode.OK and local is not None:
                    self.payments[local.reference] = LocalPayment(local.reference, local.amount_vnd, notification.state)
        self.answers.append(code.value)
        return JSONResponse(ipn_answer(code))


@pytest.fixture(scope="module")
def payment_server() -> Iterator[ServerThread]:
    with ServerThread(create_app(merchant_code=MERCHANT, secret=SECRET)) as server:
        yield server


@pytest.fixture
def sim(payment_server: ServerThread) -> Iterator[PaymentSimulator]:
    simulator: PaymentSimulator = payment_server.server.config.app.state.simulator
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
async def http(payment_server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    settings = ClientSettings(base_url=payment_server.base_url, address_policy=LOCAL, timeout_seconds=5)
    async with ClientFactory().client("payment", settings) as client:
        yield client


@pytest.fixture
def vnpay(payment_server: ServerThread, http: httpx.AsyncClient) -> VNPayProvider:
    return VNPayProvider(
        http, merchant_code=MERCHANT, secret=SECRET, payment_url=f"{payment_server.base_url}{PAYMENT_PAGE_PATH}"
    )


@pytest.fixture
async def receiver(
    payment_server: ServerThread, sim: PaymentSimulator, vnpay: VNPayProvider
) -> AsyncIterator[Receiver]:
    receiving = Receiver(vnpay)
    with ServerThread(receiving.app) as server:
        await admin_post(
            payment_server.base_url, "/_sim/config", {"notify_url": f"{server.base_url}/api/v1/payments/notify"}
        )
        yield receiving
    await admin_post(payment_server.base_url, "/_sim/config", {"notify_url": None, "ipn_delay_seconds": 0})


async def open_payment(vnpay: VNPayProvider, receiver: Receiver | None, reference: str, amount: int) -> str:
    request = await vnpay.create_payment(reference, amount, "Lệ phí hồ sơ", "https://dvc.example.vn/kq", "203.0.113.9")
    if receiver is not None:
        receiver.payments[reference] = LocalPayment(reference, amount, PaymentState.PENDING)
    async with httpx.AsyncClient(trust_env=False, timeout=5) as browser:
        page = await browser.get(request.url)
    assert page.status_code == 200, page.text
    assert reference in page.text and "Thanh toán" in page.text
    return request.url


async def test_payment_page_refuses_a_tampered_url(vnpay: VNPayProvider, sim: PaymentSimulator) -> None:
    request = await vnpay.create_payment(REF, 150_000, "Le phi", "https://dvc.example.vn/kq", "203.0.113.9")
    tampered = request.url.replace("vnp_Amount=15000000", "vnp_Amount=100")
    async with httpx.AsyncClient(trust_env=False, timeout=5) as browser:
        page = await browser.get(tampered)
    assert page.status_code == 400 and "97" in page.text
    assert sim.transactions == {}


async def test_simulator_pays_and_posts_a_correctly_signed_ipn(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver
) -> None:
    await open_payment(vnpay, receiver, REF, 150_000)
    paid = await admin_post(payment_server.base_url, f"/_sim/pay/{REF}")
    assert paid["status"] == "paid"
    assert [delivery["answer"] for delivery in paid["ipn"]] == [{"RspCode": "00", "Message": "Confirm Success"}]
    assert receiver.payments[REF].state is PaymentState.PAID
    (notification,) = receiver.notifications
    assert notification.success and notification.amount_vnd == 150_000 and notification.reference == REF
    # The browser's return URL is signed the same way.
    return_params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(paid["return_url"]).query))
    assert vnpay.verify_notification(return_params).transaction_no == paid["transaction_no"]
    # And the provider answers queries about it.
    status = await vnpay.query(REF)
    assert status.state is PaymentState.PAID and status.amount_vnd == 150_000
    assert status.transaction_no == paid["transaction_no"]


async def test_duplicate_notification_is_answered_already_confirmed(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver
) -> None:
    await open_payment(vnpay, receiver, REF, 150_000)
    paid = await admin_post(payment_server.base_url, f"/_sim/pay/{REF}", {"duplicate": True})
    assert [delivery["answer"]["RspCode"] for delivery in paid["ipn"]] == ["00", "02"]
    assert receiver.payments[REF].state is PaymentState.PAID
    assert len(receiver.notifications) == 2 and receiver.notifications[0] == receiver.notifications[1]


async def test_delayed_notification(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver, sim: PaymentSimulator
) -> None:
    await open_payment(vnpay, receiver, REF, 150_000)
    paid = await admin_post(payment_server.base_url, f"/_sim/pay/{REF}", {"delay_seconds": 0.2})
    assert paid["ipn"] == "scheduled"
    for _ in range(200):
        if receiver.answers:
            break
        await asyncio.sleep(0.025)
    assert receiver.answers == ["00"]
    assert receiver.payments[REF].state is PaymentState.PAID


async def test_amount_mismatch_failed_payment_and_unknown_reference(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver
) -> None:
    await open_payment(vnpay, receiver, "REF-AMOUNT", 150_000)
    paid = await admin_post(payment_server.base_url, "/_sim/pay/REF-AMOUNT", {"amount_vnd": 1_000})
    assert paid["ipn"][0]["answer"]["RspCode"] == "04"
    assert receiver.payments["REF-AMOUNT"].state is PaymentState.PENDING

    await open_payment(vnpay, receiver, "REF-CANCEL", 20_000)
    cancelled = await admin_post(payment_server.base_url, "/_sim/pay/REF-CANCEL", {"response_code": "24"})
    assert cancelled["status"] == "failed" and cancelled["ipn"][0]["answer"]["RspCode"] == "00"
    assert receiver.payments["REF-CANCEL"].state is PaymentState.FAILED
    assert (await vnpay.query("REF-CANCEL")).state is PaymentState.FAILED

    await open_payment(vnpay, None, "REF-NOT-OURS", 20_000)
    unknown = await admin_post(payment_server.base_url, "/_sim/pay/REF-NOT-OURS")
    assert unknown["ipn"][0]["answer"]["RspCode"] == "01"


async def test_query_states(vnpay: VNPayProvider, sim: PaymentSimulator) -> None:
    assert (await vnpay.query("NEVER-SEEN")).state is PaymentState.UNKNOWN
    await open_payment(vnpay, None, REF, 150_000)
    pending = await vnpay.query(REF)
    assert pending.state is PaymentState.PENDING and pending.amount_vnd == 150_000
    assert sim.counters["queries"] == 2


async def test_query_with_a_wrong_secret_is_an_auth_error(
    payment_server: ServerThread, http: httpx.AsyncClient
) -> None:
    wrong = VNPayProvider(
        http, merchant_code=MERCHANT, secret="wrong", payment_url=f"{payment_server.base_url}{PAYMENT_PAGE_PATH}"
    )
    with pytest.raises(AuthError):
        await wrong.query(REF)


async def test_query_answers_are_verified() -> None:
    answer: dict[str, str] = {
        "vnp_ResponseId": "1",
        "vnp_Command": "querydr",
        "vnp_ResponseCode": "00",
        "vnp_Message": "ok",
        "vnp_TmnCode": MERCHANT,
        "vnp_TxnRef": REF,
        "vnp_Amount": "15000000",
        "vnp_TransactionStatus": "00",
    }

    def answering(body: dict[str, str]) -> httpx.AsyncClient:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
        return httpx.AsyncClient(base_url="https://vnpay.example", transport=transport)

    good = {**answer, "vnp_SecureHash": pipe_signature(answer, QUERY_RESPONSE_FIELDS, SECRET)}
    assert (await provider(answering(good)).query(REF)).state is PaymentState.PAID
    forged = {**good, "vnp_Amount": "100"}
    with pytest.raises(BadResponseError):
        await provider(answering(forged)).query(REF)
    with pytest.raises(TransientError):
        await provider(answering({"vnp_ResponseCode": "99"})).query(REF)
    with pytest.raises(RuntimeError):
        await provider().query(REF)


async def test_settlement_file_reconciles(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver
) -> None:
    await open_payment(vnpay, receiver, "REF-1", 150_000)
    await open_payment(vnpay, receiver, "REF-2", 50_000)
    await admin_post(payment_server.base_url, "/_sim/pay/REF-1")
    await admin_post(payment_server.base_url, "/_sim/pay/REF-2", {"response_code": "51"})
    await admin_post(payment_server.base_url, "/_sim/transactions", {"reference": "REF-EXTRA", "amount_vnd": 30_000})
    day = datetime.now(VNPAY_TIME).strftime("%Y%m%d")
    response = await admin_get(payment_server.base_url, "/_sim/settlement", date=day)
    assert response.headers["content-type"].startswith("text/csv")
    report = vnpay.reconcile(response.text, receiver.payments.values())
    assert sorted(report.matched) == ["REF-1", "REF-2"]
    assert [row.reference for row in report.missing_locally] == ["REF-EXTRA"]
    assert not report.amount_mismatches and not report.status_mismatches and not report.missing_at_provider
    empty = await admin_get(payment_server.base_url, "/_sim/settlement", date="20000101")
    assert parse_settlement(empty.text) == []


async def test_the_payment_page_form_redirects_the_browser_to_the_signed_return_url(
    payment_server: ServerThread, vnpay: VNPayProvider, receiver: Receiver
) -> None:
    await open_payment(vnpay, receiver, REF, 150_000)
    async with httpx.AsyncClient(base_url=payment_server.base_url, trust_env=False, timeout=5) as browser:
        form = {"Content-Type": "application/x-www-form-urlencoded"}  # what the page's button sends
        cancelled = await browser.post(f"/_sim/pay/{REF}?response_code=24", content=b"", headers=form)
    assert cancelled.status_code == 303
    location = urllib.parse.urlsplit(cancelled.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://dvc.example.vn/kq"
    outcome = vnpay.verify_notification(dict(urllib.parse.parse_qsl(location.query)))
    assert not outcome.success and outcome.response_code == "24"
    assert receiver.payments[REF].state is PaymentState.FAILED
