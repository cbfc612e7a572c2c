"""The postal adapter: webhook verification, order creation and tracking against the simulated postal service."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.errors import AuthError, PermanentError, TransientError
from adapters.http import ClientFactory, ClientSettings
from adapters.netguard import AddressPolicy
from adapters.postal import (
    InvalidEvent,
    InvalidSignature,
    Order,
    PostalClient,
    TrackingEvent,
    TrackingStatus,
    request_signature,
    sign_body,
    verify_webhook,
)
from adapters.postal.webhook import MAX_BODY_BYTES, verify_signature
from gateway.simulators.postal import PostalSimulator, create_app
from tests.servers import ServerThread, admin_post

SECRET = "postal-shared-secret-H38"
LOCAL = AddressPolicy(allow_private=True)
DOSSIER = "000.00.23.H38-261123-0001"
APPLICANT = {"name": "Nguyễn Văn A", "phone": "0912345678", "address": "12 Trần Phú, Hà Tĩnh"}
AGENCY = {"name": "Bộ phận Một cửa tỉnh", "phone": "02393123456", "address": "1 Nguyễn Du, Hà Tĩnh"}
ITEMS = [{"name": "Bản gốc giấy tờ đối chiếu", "quantity": 2}]


def hmac_hex(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(**overrides: Any) -> bytes:
    event: dict[str, Any] = {
        "order_code": "EL000000001VN",
        "status": "delivered",
        "at": "2026-11-25T14:05:00+07:00",
        "note": "Đã phát thành công",
    }
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not ...}, ensure_ascii=False).encode()


# ----------------------------------------------------------------------------------------------------------------------
# Webhook verification
# ----------------------------------------------------------------------------------------------------------------------


def test_a_good_signature_gives_the_event() -> None:
    body = event_body()
    event = verify_webhook(body, hmac_hex(body), SECRET)
    assert event == TrackingEvent(
        "EL000000001VN", TrackingStatus.DELIVERED, datetime(2026, 11, 25, 7, 5, tzinfo=UTC), "Đã phát thành công"
    )
    assert sign_body(body, SECRET) == hmac_hex(body)
    # Upper-case hex, surrounding spaces and a "sha256=" prefix are the same signature.
    assert verify_webhook(body, f"  {hmac_hex(body).upper()} ", SECRET) == event
    assert verify_webhook(body, f"sha256={hmac_hex(body)}", SECRET) == event


@pytest.mark.parametrize(
    "header",
    [
        None,  # missing
        "",
        "   ",
        "not-hex",
        "ab" * 31,  # too short
        "zz" * 32,
        hmac_hex(event_body(), "another secret"),  # wrong secret
        hmac_hex(event_body(status="failed")),  # another body's signature
    ],
)
def test_bad_or_missing_signatures_are_refused(header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify_webhook(event_body(), header, SECRET)


def test_the_signature_covers_the_raw_bytes() -> None:
    body = event_body()
    signature = hmac_hex(body)
    reformatted = json.dumps(json.loads(body), indent=2).encode()  # same JSON, other bytes
    with pytest.raises(InvalidSignature):
        verify_webhook(reformatted, signature, SECRET)
    # The signature is checked before the body is read: garbage with a wrong signature is a signature error.
    with pytest.raises(InvalidSignature):
        verify_webhook(b"{not json", signature, SECRET)
    with pytest.raises(TypeError):
        verify_webhook(body.decode(), signature, SECRET)  # type: ignore[arg-type]


@given(body=st.binary(max_size=300), data=st.data())
def test_any_changed_byte_is_refused(body: bytes, data: st.DataObject) -> None:
    signature = sign_body(body, SECRET)
    verify_signature(body, signature, SECRET)
    if body:
        index = data.draw(st.integers(0, len(body) - 1))
        flip = data.draw(st.integers(1, 255))
        tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    else:
        tampered = b"\x00"
    with pytest.raises(InvalidSignature):
        verify_signature(tampered, signature, SECRET)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",  # not UTF-8
        b'["order_code"]',
        b'{"order_code": "EL1VN", "status": "delivered", "at": NaN}',
        b'{"order_code": "EL1VN", "status": "delivered", "at": "2026-11-25T14:05:00+07:00", "weight": 1e999}',
        b'{"order_code": "EL1\\u0000VN", "status": "delivered", "at": "2026-11-25T14:05:00+07:00"}',
        event_body(status="lost_in_space"),
        event_body(status="DELIVERED"),
        event_body(status=None),
        event_body(order_code=""),
        event_body(order_code=42),
        event_body(order_code=...),
        event_body(at=...),
        event_body(at="25/11/2026 14:05"),
        event_body(at=1764054300),
        event_body(note=["not", "text"]),
        event_body(note="x" * 5000),
    ],
)
def test_malformed_events_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        verify_webhook(body, hmac_hex(body), SECRET)


def test_oversized_bodies_are_refused_before_anything_else() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    with pytest.raises(InvalidEvent, match="larger"):
        verify_webhook(body, hmac_hex(body), SECRET)


def test_times_without_offset_are_vietnam_time_and_note_is_optional() -> None:
    body = event_body(at="2026-11-25T14:05:00", note=...)
    event = verify_webhook(body, hmac_hex(body), SECRET)
    assert event.at.utcoffset() == timedelta(hours=7) and event.at.hour == 14
    assert event.note is None
    for status in ("accepted", "in_transit", "delivered", "failed", "returned"):
        body = event_body(status=status)
        assert verify_webhook(body, hmac_hex(body), SECRET).status == status


# ----------------------------------------------------------------------------------------------------------------------
# Against the simulator
# ----------------------------------------------------------------------------------------------------------------------


class Receiver:
    """The gateway's side of the tracking webhook, as a portal backend would write it with this adapter."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[TrackingEvent] = []
        self.refused: list[str] = []
        self.app = Starlette(routes=[Route("/api/v1/postal/events", self.receive, methods=["POST"])])

    async def receive(self, request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            event = verify_webhook(raw, request.headers.get("X-Signature"), self.secret)
        except InvalidSignature as exc:
            self.refused.append(str(exc))
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        except InvalidEvent as exc:
            self.refused.append(str(exc))
            return JSONResponse({"error": "invalid_event"}, status_code=400)
        self.events.append(event)
        return JSONResponse({"accepted": True})


@pytest.fixture(scope="module")
def postal_server() -> Iterator[ServerThread]:
    with ServerThread(create_app(secret=SECRET)) as server:
        yield server


@pytest.fixture
def sim(postal_server: ServerThread) -> Iterator[PostalSimulator]:
    simulator: PostalSimulator = postal_server.server.config.app.state.simulator
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
async def http(postal_server: ServerThread) -> AsyncIterator[httpx.AsyncClient]:
    settings = ClientSettings(base_url=postal_server.base_url, address_policy=LOCAL, timeout_seconds=5)
    async with ClientFactory().client("postal", settings) as client:
        yield client


@pytest.fixture
def postal(http: httpx.AsyncClient, sim: PostalSimulator) -> PostalClient:
    return PostalClient(http, secret=SECRET, backoff_seconds=0.01, max_backoff_seconds=0.05)


async def test_create_order_and_track(postal: PostalClient, sim: PostalSimulator) -> None:
    order = await postal.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, f"{DOSSIER}:pickup")
    assert isinstance(order, Order)
    assert order.order_code.startswith("EL") and order.order_code.endswith("VN")
    assert order.status == "accepted" and order.kind == "pickup" and order.dossier_code == DOSSIER
    assert not order.duplicate
    stored = sim.orders[order.order_code]
    assert stored["request"]["sender"] == APPLICANT and stored["request"]["items"] == ITEMS
    events = await postal.track(order.order_code)
    assert [e.status for e in events] == [TrackingStatus.ACCEPTED]
    assert events[0].order_code == order.order_code and events[0].at.tzinfo is not None


async def test_order_creation_is_idempotent(postal: PostalClient, sim: PostalSimulator) -> None:
    key = f"{DOSSIER}:delivery"
    first = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, key)
    again = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, key)
    assert again.order_code == first.order_code and again.duplicate
    assert len(sim.orders) == 1 and sim.counters["orders_created"] == 1
    other = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, key + ":2")
    assert other.order_code != first.order_code
    with pytest.raises(PermanentError) as caught:  # the same key for another order
        await postal.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, key)
    assert caught.value.status_code == 422


async def test_a_lost_answer_is_retried_without_a_second_order(
    postal_server: ServerThread, postal: PostalClient, sim: PostalSimulator
) -> None:
    await admin_post(postal_server.base_url, "/_sim/faults", {"lose_next": 1})
    order = await postal.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k-lost")
    assert order.duplicate and sim.counters["orders_created"] == 1 and len(sim.orders) == 1
    await admin_post(postal_server.base_url, "/_sim/faults", {"fail_next": 2})
    order = await postal.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k-fail")
    assert not order.duplicate and sim.counters["orders_created"] == 2
    assert sim.counters["faults"] == 3


async def test_persistent_failures_are_transient_errors(
    postal_server: ServerThread, http: httpx.AsyncClient, sim: PostalSimulator
) -> None:
    client = PostalClient(http, secret=SECRET, attempts=2, backoff_seconds=0.01)
    await admin_post(postal_server.base_url, "/_sim/faults", {"fail_next": 5})
    with pytest.raises(TransientError):
        await client.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k")
    assert sim.counters["requests"] == 2 and sim.orders == {}


async def test_a_wrong_secret_is_an_auth_error(http: httpx.AsyncClient, sim: PostalSimulator) -> None:
    client = PostalClient(http, secret="not the secret", backoff_seconds=0.01)
    with pytest.raises(AuthError):
        await client.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k")
    with pytest.raises(AuthError):
        await client.track("EL000000001VN")
    assert sim.counters["unauthorized"] == 2 and sim.counters["requests"] == 2  # no retry of a refusal
    assert "not the secret" not in repr(client)


async def test_requests_are_signed_over_method_path_and_body(postal: PostalClient) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(201, json={"order_code": "EL9VN", "status": "accepted"})
        return httpx.Response(200, json={"order_code": "EL 9/VN", "events": []})

    http = httpx.AsyncClient(base_url="https://buudien.example.vn/api", transport=httpx.MockTransport(handler))
    client = PostalClient(http, secret=SECRET)
    await client.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, "k1")
    await client.track("EL 9VN")
    post, get = seen
    assert post.headers["X-Signature"] == hmac_hex(b"POST /api/orders\n" + post.content)
    assert post.headers["Idempotency-Key"] == "k1"
    assert get.headers["X-Signature"] == hmac_hex(b"GET /api/orders/EL%209VN/events\n")
    assert request_signature("get", "/x", b"", SECRET) == hmac_hex(b"GET /x\n")


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "express"},
        {"dossier_code": " "},
        {"receiver": {"name": "A", "address": "B"}},  # no phone
        {"sender": "Nguyễn Văn A"},
        {"items": []},
        {"items": [{"quantity": 1}]},
        {"items": [{"name": "Hồ sơ", "quantity": 1.5}]},
        {"idempotency_key": ""},
        {"idempotency_key": "khóa"},
    ],
)
async def test_order_arguments_are_checked_before_sending(
    postal: PostalClient, sim: PostalSimulator, overrides: dict[str, Any]
) -> None:
    arguments: dict[str, Any] = {
        "kind": "pickup",
        "dossier_code": DOSSIER,
        "sender": APPLICANT,
        "receiver": AGENCY,
        "items": ITEMS,
        "idempotency_key": "k",
    }
    arguments.update(overrides)
    with pytest.raises(ValueError):
        await postal.create_order(**arguments)
    assert sim.counters["requests"] == 0


async def test_tracking_an_unknown_order(postal: PostalClient) -> None:
    with pytest.raises(PermanentError) as caught:
        await postal.track("EL999999999VN")
    assert caught.value.status_code == 404
    with pytest.raises(ValueError):
        await postal.track("")


@pytest.fixture
async def receiver(postal_server: ServerThread, sim: PostalSimulator) -> AsyncIterator[Receiver]:
    receiving = Receiver(SECRET)
    with ServerThread(receiving.app) as server:
        await admin_post(
            postal_server.base_url, "/_sim/config", {"webhook_url": f"{server.base_url}/api/v1/postal/events"}
        )
        yield receiving
    await admin_post(postal_server.base_url, "/_sim/config", {"webhook_url": None})


async def test_webhook_push_from_the_simulator_is_verified(
    postal_server: ServerThread, postal: PostalClient, receiver: Receiver
) -> None:
    order = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, "k-delivery")
    advance = f"/_sim/orders/{order.order_code}/advance"
    moved = await admin_post(postal_server.base_url, advance)
    assert moved["event"]["status"] == "in_transit" and moved["webhook"]["status_code"] == 200
    await admin_post(postal_server.base_url, advance)
    assert [(e.order_code, e.status) for e in receiver.events] == [
        (order.order_code, TrackingStatus.IN_TRANSIT),
        (order.order_code, TrackingStatus.DELIVERED),
    ]
    assert receiver.refused == []
    assert PostalClient.is_final(receiver.events[-1].status)
    tracked = await postal.track(order.order_code)
    assert [e.status.value for e in tracked] == ["accepted", "in_transit", "delivered"]
    async with httpx.AsyncClient(base_url=postal_server.base_url, trust_env=False) as admin:
        final = await admin.post(advance, json={})
    assert final.status_code == 409  # delivered is final


async def test_failed_delivery_then_returned(
    postal_server: ServerThread, postal: PostalClient, receiver: Receiver
) -> None:
    order = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, "k-return")
    advance = f"/_sim/orders/{order.order_code}/advance"
    await admin_post(postal_server.base_url, advance)
    await admin_post(postal_server.base_url, advance, {"status": "failed", "note": "Người nhận vắng nhà"})
    await admin_post(postal_server.base_url, advance)  # failed -> returned
    assert [e.status.value for e in receiver.events] == ["in_transit", "failed", "returned"]
    assert receiver.events[1].note == "Người nhận vắng nhà"
    async with httpx.AsyncClient(base_url=postal_server.base_url, trust_env=False) as admin:
        illegal = await admin.post(f"/_sim/orders/{order.order_code}/advance", json={"status": "delivered"})
    assert illegal.status_code == 409


async def test_a_receiver_with_another_secret_refuses_the_push(
    postal_server: ServerThread, postal: PostalClient, sim: PostalSimulator
) -> None:
    wrong = Receiver("another secret")
    with ServerThread(wrong.app) as server:
        await admin_post(
            postal_server.base_url, "/_sim/config", {"webhook_url": f"{server.base_url}/api/v1/postal/events"}
        )
        try:
            order = await postal.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k-wrong")
            moved = await admin_post(postal_server.base_url, f"/_sim/orders/{order.order_code}/advance")
        finally:
            await admin_post(postal_server.base_url, "/_sim/config", {"webhook_url": None})
    assert moved["webhook"]["status_code"] == 401
    assert wrong.events == [] and wrong.refused == ["the X-Signature does not match the body"]


async def test_orders_move_on_by_themselves_over_time(postal: PostalClient, sim: PostalSimulator) -> None:
    order = await postal.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, "k-clock")
    assert await sim.tick() == 0  # no auto_advance_seconds: only on demand
    sim.auto_advance_seconds = 60
    try:
        assert await sim.tick() == 0  # the order is younger than a minute
        later = datetime.now(UTC) + timedelta(minutes=2)
        assert await sim.tick(later) == 1
        assert sim.orders[order.order_code]["status"] == "in_transit"
    finally:
        sim.auto_advance_seconds = None


async def test_the_simulator_clock_delivers_orders_while_it_runs() -> None:
    with ServerThread(create_app(secret=SECRET, auto_advance_seconds=0.05)) as server:
        settings = ClientSettings(base_url=server.base_url, address_policy=LOCAL, timeout_seconds=5)
        async with ClientFactory().client("postal", settings) as http:
            client = PostalClient(http, secret=SECRET)
            order = await client.create_order("delivery", DOSSIER, AGENCY, APPLICANT, ITEMS, "k-running")
            with anyio.fail_after(20):
                while [e.status.value for e in await client.track(order.order_code)][-1] != "delivered":
                    await asyncio.sleep(0.05)
            statuses = [e.status.value for e in await client.track(order.order_code)]
    assert statuses == ["accepted", "in_transit", "delivered"]


async def test_occasional_server_errors_when_configured(
    postal_server: ServerThread, http: httpx.AsyncClient, sim: PostalSimulator
) -> None:
    client = PostalClient(http, secret=SECRET, attempts=2, backoff_seconds=0.01)
    await admin_post(postal_server.base_url, "/_sim/faults", {"error_rate": 1})
    with pytest.raises(TransientError):
        await client.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k-flaky")
    assert sim.counters["faults"] == 2 and sim.orders == {}
    await admin_post(postal_server.base_url, "/_sim/faults", {"error_rate": 0})
    assert (await client.create_order("pickup", DOSSIER, APPLICANT, AGENCY, ITEMS, "k-flaky")).status == "accepted"
    async with httpx.AsyncClient(base_url=postal_server.base_url, trust_env=False) as admin:
        for bad in ({"error_rate": 1.5}, {"error_rate": True}, {"duplicate_webhooks": 1}):
            assert (await admin.post("/_sim/faults", json=bad)).status_code == 400
        assert (await admin.post("/_sim/config", json={"auto_advance_seconds": 0})).status_code == 400
