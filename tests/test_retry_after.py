"""An upstream's ``Retry-After`` (RFC 9110 §10.2.3) is honoured by the outbox.

A REST agency answering ``429`` and a SOAP agency answering ``503``, each with ``Retry-After`` (seconds, or an HTTP
date), are real servers on 127.0.0.1 reached through the real adapters; an :class:`~gateway.workers.OutboxWorker`
delivers to them. The message's next attempt waits at least as long as the agency asked (at most the policy's longest
backoff), the agency is sent nothing more meanwhile, and the delivery goes through once the wait is over. Time in
the outbox and in the breakers is a controlled clock. Last, the daemon's ``/metrics`` shows the agency held back.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from adapters.errors import TransientError
from adapters.http import ClientFactory, ClientSettings, bearer, error_for_response, retry_after
from adapters.netguard import AddressPolicy
from adapters.onestop import RestOneStopClient
from adapters.onestop.soap import SoapOneStopClient
from adapters.postal import PostalClient
from gateway import outbox
from gateway.outbox import RetryPolicy
from gateway.simulators import agency as agency_sim
from gateway.simulators.soap_agency import create_soap_app
from gateway.store.database import Database
from gateway.store.models import utcnow
from gateway.workers import CLOSED, OPEN, CircuitBreakers, CircuitBreakerSettings, MessageView, OutboxWorker
from tests.servers import ServerThread
from tests.soap_support import dossier
from tests.test_daemon import ADMIN_TOKEN, OUTBOUND_TOKEN, PORTAL_TOKEN, daemon_beside, submission
from tests.test_faults_network import Clock, enqueue

AGENCY = "000.00.23.H38"
TOKEN = "retry-after-test-token"
TARGET = f"agency:{AGENCY}"
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=UTC)


def answer(status: int, retry: str | None) -> httpx.Response:
    headers = {"Retry-After": retry.encode("utf-8")} if retry is not None else {}
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://agency.example/dossiers"))


# ----------------------------------------------------------------------------------------------------------------------
# Reading the header


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        (" 30 ", 30.0),
        ("Thu, 03 Dec 2026 02:01:30 GMT", 90.0),  # IMF-fixdate
        ("Thursday, 03-Dec-26 02:00:10 GMT", 10.0),  # RFC 850, obsolete but legal
        ("Thu Dec  3 02:00:05 2026", 5.0),  # asctime, obsolete but legal
        ("Thu, 03 Dec 2026 01:00:00 GMT", 0.0),  # already past: no wait
        ("9" * 400, float("inf")),  # absurd: callers cap it
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("١٢٠", None),  # Arabic-Indic digits are digits to Python, not to HTTP
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after(answer(503, value), now=lambda: NOW) == seconds


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_rate_limit_or_server_error_carries_the_wait(status: int) -> None:
    error = error_for_response(answer(status, "45"), "agency:X")
    assert isinstance(error, TransientError)
    assert error.retry_after == 45.0


@pytest.mark.parametrize("status", [400, 401, 404, 409, 301])
def test_other_answers_carry_no_wait(status: int) -> None:
    error = error_for_response(answer(status, "45"), "agency:X")
    assert error is not None and error.retry_after is None


def test_the_retry_waits_for_the_upstream_but_never_past_the_longest_backoff() -> None:
    policy = RetryPolicy(initial_seconds=2, max_seconds=600, jitter_seconds=0)
    assert policy.retry_wait(1) == 2
    assert policy.retry_wait(1, 120) == 120
    assert policy.retry_wait(1, 1) == 2  # the backoff is longer: the backoff
    assert policy.retry_wait(4, 0) == 16
    assert policy.retry_wait(1, 10_000) == 600
    assert policy.retry_wait(1, float("inf")) == 600


# ----------------------------------------------------------------------------------------------------------------------
# End to end: the outbox and real agencies


class Refusing:
    """An ASGI app answering its first ``refusals`` POSTs with ``status`` and ``Retry-After: retry`` (whose value may
    be computed at each answer), and passing everything else to ``app``."""

    def __init__(self, app: Any, status: int, retry: Any, refusals: int = 1) -> None:
        self.app, self.status, self.retry, self.left = app, status, retry, refusals
        self.posts = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts += 1
            if self.left > 0:
                self.left -= 1
                while (await receive()).get("more_body"):
                    pass
                value = self.retry() if callable(self.retry) else self.retry
                headers = [(b"retry-after", value.encode()), (b"content-type", b"text/plain")]
                await send({"type": "http.response.start", "status": self.status, "headers": headers})
                await send({"type": "http.response.body", "body": b"busy, come back later"})
                return
        await self.app(scope, receive, send)


class Deliver:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def dispatch(self, message: MessageView) -> None:
        await self.client.deliver(dossier(message.payload["code"]), message.idempotency_key)


def row(db: Database, message_id: int) -> tuple[str, int, datetime]:
    with db.unit_of_work() as session:
        message = outbox.get(session, message_id)
        assert message is not None
        due = message.next_attempt_at
        return message.state, message.attempts, due if due.tzinfo else due.replace(tzinfo=UTC)


def worker_for(db: Database, dispatcher: Any, clock: Clock, max_seconds: float = 600) -> OutboxWorker:
    return OutboxWorker(
        db,
        dispatcher,
        worker_id="retry-after-worker",
        policy=RetryPolicy(max_attempts=5, initial_seconds=1, max_seconds=max_seconds, jitter_seconds=0),
        breaker=CircuitBreakerSettings(failure_threshold=5, cooldown_seconds=30),
        delivery_timeout=10,
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
    )


@asynccontextmanager
async def agency_at(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """``app`` served on 127.0.0.1, and a client to it from the real factory (bearer token, short timeouts)."""
    with ServerThread(app) as server:
        settings = ClientSettings(
            base_url=server.base_url, address_policy=AddressPolicy(allow_private=True), timeout_seconds=5
        )
        async with ClientFactory().client(TARGET, settings, auth=bearer(TOKEN)) as http:
            yield http, server.base_url


async def test_a_rest_agency_rate_limiting_is_left_alone_as_long_as_it_asked(db: Database) -> None:
    clock = Clock(now=NOW)
    app = Refusing(agency_sim.create_app(token=TOKEN), 429, "120")
    async with agency_at(app) as (http, _url):
        worker = worker_for(db, Deliver(RestOneStopClient(http, agency_code=AGENCY)), clock)
        first = enqueue(db, TARGET, f"{AGENCY}-261203-0001", clock)
        second = enqueue(db, TARGET, f"{AGENCY}-261203-0002", clock)
        worker.batch = worker.max_in_flight = 1

        assert await worker.run_once() == 1
        state, attempts, due = row(db, first)
        assert (state, attempts) == (outbox.PENDING, 1)
        assert due == NOW + timedelta(seconds=120)  # not the 1 s backoff: what the agency asked
        assert worker.breaker_state(TARGET) == OPEN

        # Within the wait nothing is sent to the agency, the other message included (its attempts not spent).
        clock.advance(119)
        assert await worker.run_once() == 0
        assert row(db, second)[:2] == (outbox.PENDING, 0)
        assert app.posts == 1

        # After it, both are delivered.
        clock.advance(2)
        worker.batch = worker.max_in_flight = 2
        assert await worker.run_once() == 2
        assert row(db, first)[0] == row(db, second)[0] == outbox.DONE
        assert worker.breaker_state(TARGET) == CLOSED
        assert app.posts == 3


async def test_a_soap_agency_unavailable_until_a_date_is_retried_after_it(db: Database) -> None:
    clock = Clock(now=NOW)
    # An HTTP date is read against the real clock (the answer's own time), to the second.
    until = lambda: email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=300), usegmt=True)  # noqa: E731
    app = Refusing(create_soap_app(token=TOKEN), 503, until)
    async with agency_at(app) as (http, base_url):
        soap = SoapOneStopClient(
            http,
            agency_code=AGENCY,
            wsdl=f"{base_url}/soap?wsdl",
            address_policy=AddressPolicy(allow_private=True),
        )
        worker = worker_for(db, Deliver(soap), clock)
        message = enqueue(db, TARGET, f"{AGENCY}-261203-0003", clock)

        assert await worker.run_once() == 1
        state, attempts, due = row(db, message)
        assert (state, attempts) == (outbox.PENDING, 1)
        assert NOW + timedelta(seconds=290) <= due <= NOW + timedelta(seconds=300)
        assert worker.breaker_state(TARGET) == OPEN

        clock.advance(301)
        assert await worker.run_once() == 1
        assert row(db, message)[0] == outbox.DONE


async def test_a_wait_longer_than_the_longest_backoff_is_cut_to_it(db: Database) -> None:
    clock = Clock(now=NOW)
    app = Refusing(agency_sim.create_app(token=TOKEN), 503, "86400")
    async with agency_at(app) as (http, _url):
        worker = worker_for(db, Deliver(RestOneStopClient(http, agency_code=AGENCY)), clock, max_seconds=60)
        message = enqueue(db, TARGET, f"{AGENCY}-261203-0004", clock)

        assert await worker.run_once() == 1
        assert row(db, message)[2] == NOW + timedelta(seconds=60)
        clock.advance(61)
        assert worker.breaker_state(TARGET) != OPEN
        assert await worker.run_once() == 1
        assert row(db, message)[0] == outbox.DONE


# ----------------------------------------------------------------------------------------------------------------------
# The postal client's own retries


@pytest.mark.parametrize(("asked", "requests"), [("0", 3), ("3600", 1)])
async def test_the_postal_client_retries_itself_only_within_its_own_longest_wait(asked: str, requests: int) -> None:
    seen: list[httpx.Request] = []

    def busy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(429, headers={"Retry-After": asked}, text="slow down")

    async with httpx.AsyncClient(transport=httpx.MockTransport(busy), base_url="https://postal.example") as http:
        postal = PostalClient(http, secret="s", attempts=3, backoff_seconds=0.001, max_backoff_seconds=5)
        with pytest.raises(TransientError) as caught:
            await postal.track("EL123456789VN")
    assert len(seen) == requests  # a wait longer than its own is left to the outbox
    assert caught.value.retry_after == float(asked)


def test_a_hold_outlasts_a_success_already_under_way() -> None:
    clock = Clock(now=NOW)
    breakers = CircuitBreakers(CircuitBreakerSettings(), monotonic=lambda: clock.mono)
    breakers.hold(TARGET, 60)
    breakers.success(TARGET)  # a delivery sent before the agency asked to be left alone
    assert breakers.state(TARGET) == OPEN and breakers.limits() == {TARGET: 0}
    assert breakers.held_back() == {TARGET: True}  # what /metrics reports (dvc_gateway_circuit_open)
    clock.advance(61)
    assert breakers.state(TARGET) == CLOSED and breakers.limits() == {}
    assert breakers.held_back() == {}


# ----------------------------------------------------------------------------------------------------------------------
# The daemon: what /metrics says


async def test_an_agency_asking_to_wait_shows_as_an_open_circuit_in_the_metrics(tmp_path: Path) -> None:
    simulator = agency_sim.create_app(token=OUTBOUND_TOKEN)
    asked: list[str] = []

    async def busy(scope: Any, receive: Any, send: Any) -> None:  # every delivery: 429, come back in 10 minutes
        if scope["type"] == "http" and scope["method"] == "POST":
            asked.append(scope["path"])
            await send({"type": "http.response.start", "status": 429, "headers": [(b"retry-after", b"600")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await simulator(scope, receive, send)

    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    circuit = f'dvc_gateway_circuit_open{{upstream="{AGENCY}"}} '
    beside = daemon_beside(busy, tmp_path, backoff_max_seconds=900)
    async with beside as (runtime, url), httpx.AsyncClient(base_url=url) as client:
        assert circuit not in (await client.get("/metrics", headers=admin)).text  # nothing known yet
        response = await client.post(
            "/api/v1/dossiers", json=submission(1), headers={"Authorization": f"Bearer {PORTAL_TOKEN}"}
        )
        assert response.status_code == 201, response.text
        with anyio.fail_after(20):
            while circuit + "1.0" not in (await client.get("/metrics", headers=admin)).text:
                await asyncio.sleep(0.05)

        def retried() -> list[tuple[int, str, datetime]]:
            with runtime.db.unit_of_work() as session:
                pending = outbox.list_messages(session, outbox.PENDING, limit=10)
                return [(m.attempts, m.last_error or "", m.next_attempt_at) for m in pending if m.attempts]

        with anyio.fail_after(20):  # the hold is set when the answer comes, the outcome recorded just after
            while not retried():
                await asyncio.sleep(0.05)
        [(attempts, error, due)] = retried()
        assert attempts == 1 and "rate limited" in error
        assert due.replace(tzinfo=due.tzinfo or UTC) - utcnow() > timedelta(seconds=500)  # asked 10 minutes
    assert asked == ["/dossiers"]
