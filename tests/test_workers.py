"""The outbox worker loop: delivery, outcomes, isolation between agencies, circuit breaker, leases, shutdown.

Runs on SQLite and, when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set, on PostgreSQL. No test asserts a timing: waits are
for conditions, with generous limits.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import event

from adapters.errors import AuthError, PermanentError, TransientError
from gateway import outbox
from gateway.config import ConfigError, parse_section
from gateway.outbox import RetryPolicy
from gateway.sections import OutboxSection
from gateway.store.database import Database
from gateway.store.models import OutboxMessage, utcnow
from gateway.workers import CircuitBreakerSettings, MessageView, OutboxWorker
from tests.databases import BACKENDS, open_database

QUICK_RETRY = RetryPolicy(max_attempts=5, initial_seconds=0.001, max_seconds=0.001, jitter_seconds=0)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


class FakeAgencies:
    """A dispatcher whose behaviour per target is a coroutine function; records every delivery."""

    def __init__(self) -> None:
        self.behaviour: dict[str, Callable[[MessageView], Awaitable[None]]] = {}
        self.delivered: list[MessageView] = []
        self.calls: list[MessageView] = []

    async def dispatch(self, message: MessageView) -> None:
        self.calls.append(message)
        behaviour = self.behaviour.get(message.target)
        if behaviour is not None:
            await behaviour(message)
        self.delivered.append(message)

    def keys(self, target: str | None = None) -> list[str]:
        return [m.idempotency_key for m in self.delivered if target is None or m.target == target]


def add(db: Database, key: str, target: str = "A", dossier: str | None = None) -> int:
    with db.unit_of_work() as session:
        return outbox.enqueue(
            session, kind="deliver", target=target, payload={"code": key}, idempotency_key=key, ordering_key=dossier
        ).id


def rows(db: Database) -> dict[str, OutboxMessage]:
    with db.unit_of_work() as session:
        messages = outbox.list_messages(session, limit=10_000)
        for message in messages:
            session.expunge(message)
        return {message.idempotency_key: message for message in messages}


def states(db: Database) -> dict[str, int]:
    with db.unit_of_work() as session:
        return outbox.stats(session)


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


def worker(db: Database, dispatcher, **kwargs) -> OutboxWorker:
    kwargs.setdefault("worker_id", "w1")
    kwargs.setdefault("policy", QUICK_RETRY)
    kwargs.setdefault("poll_interval", 0.02)
    return OutboxWorker(db, dispatcher, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------


async def test_run_once_delivers_with_the_idempotency_key(db: Database) -> None:
    agencies = FakeAgencies()
    add(db, "000.00.23.H38-261122-0001:deliver", dossier="000.00.23.H38-261122-0001")
    add(db, "000.00.23.H38-261122-0002:deliver", target="B")
    w = worker(db, agencies)
    assert await w.run_once() == 2
    assert await w.run_once() == 0
    assert sorted(agencies.keys()) == ["000.00.23.H38-261122-0001:deliver", "000.00.23.H38-261122-0002:deliver"]
    view = agencies.delivered[0]
    assert (view.kind, view.attempts, view.payload) == ("deliver", 1, {"code": view.idempotency_key})
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.attempts = 2  # type: ignore[misc]
    assert states(db)["done"] == 2
    assert w.counters["delivered"] == 2


async def test_outcomes_transient_retry_permanent_dead_unexpected_retry(db: Database) -> None:
    async def by_key(message: MessageView) -> None:
        error = {
            "transient": TransientError("503 Service Unavailable", upstream="agency A", status_code=503),
            "permanent": PermanentError("unknown procedure", upstream="agency A", status_code=422),
            "auth": AuthError("token refused", status_code=401),
            "unexpected": KeyError("MaHoSo"),
        }.get(message.idempotency_key)
        if error is not None:
            raise error

    agencies = FakeAgencies()
    agencies.behaviour["A"] = by_key
    for key in ("transient", "permanent", "auth", "unexpected", "fine"):
        add(db, key)
    w = worker(db, agencies, policy=RetryPolicy(), concurrency_per_target=10)
    assert await w.run_once() == 5
    after = rows(db)
    assert after["fine"].state == "done"
    assert (after["transient"].state, after["transient"].attempts) == ("pending", 1)
    assert after["transient"].last_error == "TransientError: agency A: 503 Service Unavailable (HTTP 503)"
    assert after["transient"].next_attempt_at > utcnow()  # scheduled with backoff, not retried in a loop
    assert (after["permanent"].state, after["permanent"].attempts) == ("dead", 1)
    assert after["permanent"].last_error.startswith("PermanentError: ")
    assert after["auth"].state == "dead"
    assert (after["unexpected"].state, after["unexpected"].last_error) == ("pending", "KeyError: 'MaHoSo'")
    assert w.counters == {"delivered": 1, "retried": 2, "dead": 2, "refused": 0, "errors": 0}


async def test_an_unexpected_exception_is_retried_and_the_loop_keeps_running(db: Database) -> None:
    failed_once: set[str] = set()

    async def flaky(message: MessageView) -> None:
        if message.idempotency_key not in failed_once:
            failed_once.add(message.idempotency_key)
            raise ZeroDivisionError("bug in a mapping")

    agencies = FakeAgencies()
    agencies.behaviour["A"] = flaky
    for i in range(3):
        add(db, f"a{i}")
        add(db, f"b{i}", target="B")
    w = worker(db, agencies)
    stop = asyncio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run, stop)
        await eventually(lambda: states(db)["done"] == 6)
        stop.set()
    after = rows(db)
    assert all(after[f"a{i}"].attempts == 2 for i in range(3))
    assert Counter(m.idempotency_key for m in agencies.calls)["a0"] == 2


async def test_one_slow_agency_does_not_block_the_others(db: Database) -> None:
    release_a = anyio.Event()

    async def stuck(message: MessageView) -> None:
        await release_a.wait()

    agencies = FakeAgencies()
    agencies.behaviour["A"] = stuck
    for i in range(8):
        add(db, f"a{i}", target="A", dossier=f"DA{i}")
    for i in range(10):
        add(db, f"b{i}", target="B", dossier=f"DB{i}")
    w = worker(db, agencies, concurrency_per_target=3, batch=5)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run, stop)
        # B is delivered entirely while A's first deliveries are still stuck
        await eventually(lambda: len(agencies.keys("B")) == 10)
        assert agencies.keys("A") == []
        in_flight_a = {m.idempotency_key for m in agencies.calls if m.target == "A"}
        assert len(in_flight_a) == 3  # A holds no more than its own limit
        # B keeps flowing: a new message is delivered while A is still blocked
        add(db, "b-late", target="B")
        w.notify()
        await eventually(lambda: "b-late" in agencies.keys("B"))
        assert agencies.keys("A") == []
        release_a.set()
        await eventually(lambda: states(db)["done"] == 19)
        stop.set()
    assert sorted(agencies.keys("A")) == [f"a{i}" for i in range(8)]


async def test_a_dead_letter_parks_only_its_dossier_in_the_worker(db: Database) -> None:
    async def refuse_d1(message: MessageView) -> None:
        if message.idempotency_key == "D1:deliver":
            raise PermanentError("dossier refused by the agency's schema")

    agencies = FakeAgencies()
    agencies.behaviour["A"] = refuse_d1
    add(db, "D1:deliver", dossier="D1")
    add(db, "D1:supplement", dossier="D1")
    add(db, "D2:deliver", dossier="D2")
    add(db, "D2:supplement", dossier="D2")
    w = worker(db, agencies)
    while await w.run_once():
        pass
    after = rows(db)
    assert after["D1:deliver"].state == "dead"
    assert after["D1:supplement"].state == "pending"  # waits for its dossier's dead letter
    assert (after["D2:deliver"].state, after["D2:supplement"].state) == ("done", "done")
    assert agencies.keys() == ["D2:deliver", "D2:supplement"]
    assert w.breaker_state("A") == "closed"  # a refusal is an answer: the agency is up


async def test_circuit_breaker_opens_for_one_target_and_others_still_flow(db: Database) -> None:
    clock = [1000.0]
    a_down = [True]

    async def agency_a(message: MessageView) -> None:
        if a_down[0]:
            raise TransientError("connection refused", upstream="A")

    agencies = FakeAgencies()
    agencies.behaviour["A"] = agency_a
    for i in range(5):
        add(db, f"a{i}", target="A")
    for i in range(3):
        add(db, f"b{i}", target="B")
    w = worker(
        db,
        agencies,
        policy=RetryPolicy(max_attempts=50, initial_seconds=0.001, max_seconds=0.001, jitter_seconds=0),
        concurrency_per_target=3,
        breaker=CircuitBreakerSettings(failure_threshold=3, cooldown_seconds=60),
        monotonic=lambda: clock[0],
    )
    assert await w.run_once() == 6  # a0-a2 (A's limit) and b0-b2
    assert w.breaker_state("A") == "open"
    assert states(db)["done"] == 3
    attempts_when_opened = sum(m.attempts for m in rows(db).values() if m.idempotency_key.startswith("a"))

    # while it is open, A's messages stay in the outbox (no attempt spent) and B's keep flowing
    for i in range(3, 6):
        add(db, f"b{i}", target="B")
    await anyio.sleep(0.01)
    assert await w.run_once() == 3
    assert await w.run_once() == 0
    assert sum(m.attempts for m in rows(db).values() if m.idempotency_key.startswith("a")) == attempts_when_opened
    assert sorted(agencies.keys("B")) == [f"b{i}" for i in range(6)]

    # after the cooldown one probe goes through; it fails: open again
    clock[0] += 61
    assert w.breaker_state("A") == "half_open"
    assert await w.run_once() == 1
    assert w.breaker_state("A") == "open"

    # the agency is back: the next probe succeeds, the breaker closes and the backlog drains
    a_down[0] = False
    clock[0] += 61
    await anyio.sleep(0.01)
    assert await w.run_once() == 1
    assert w.breaker_state("A") == "closed"
    while await w.run_once():
        pass
    assert states(db) == {"pending": 0, "in_flight": 0, "done": 11, "dead": 0}


async def test_a_delivery_longer_than_its_timeout_is_retried(db: Database) -> None:
    async def hang(message: MessageView) -> None:
        if message.attempts == 1:
            await anyio.sleep(30)

    agencies = FakeAgencies()
    agencies.behaviour["A"] = hang
    add(db, "k")
    w = worker(db, agencies, lease=timedelta(seconds=5), delivery_timeout=0.1)
    assert await w.run_once() == 1
    first = rows(db)["k"]
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.last_error.startswith("TimeoutError")
    await anyio.sleep(0.01)
    assert await w.run_once() == 1
    assert rows(db)["k"].state == "done"


async def test_a_worker_whose_claim_was_retaken_cannot_record(db: Database) -> None:
    agencies = FakeAgencies()
    add(db, "k")

    async def stall_until_retaken(message: MessageView) -> None:
        # meanwhile the lease runs out and another worker takes the message over
        def retake(session):
            later = utcnow() + timedelta(seconds=120)
            return outbox.claim(session, worker_id="w2", limit=1, lease=timedelta(seconds=60), now=later)

        assert [m.id for m in await db.run(retake)] == [message.id]

    agencies.behaviour["A"] = stall_until_retaken
    w = worker(db, agencies, lease=timedelta(seconds=60))
    assert await w.run_once() == 1
    assert w.counters["refused"] == 1
    held = rows(db)["k"]
    assert (held.state, held.claimed_by, held.attempts) == ("in_flight", "w2", 2)


async def test_stop_releases_unfinished_deliveries(db: Database) -> None:
    async def forever(message: MessageView) -> None:
        await anyio.sleep_forever()

    agencies = FakeAgencies()
    agencies.behaviour["A"] = forever
    add(db, "stuck", target="A")
    add(db, "quick", target="B")
    w = worker(db, agencies, shutdown_grace=0.1)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run, stop)
        await eventually(lambda: "quick" in agencies.keys() and w.in_flight == 1)
        assert rows(db)["stuck"].state == "in_flight"
        stop.set()
    after = rows(db)["stuck"]
    assert (after.state, after.attempts, after.claimed_by, after.lease_until) == ("pending", 0, None, None)
    assert rows(db)["quick"].state == "done"


async def test_stop_lets_in_flight_deliveries_finish_within_the_grace(db: Database) -> None:
    started = anyio.Event()
    proceed = anyio.Event()

    async def slow(message: MessageView) -> None:
        started.set()
        await proceed.wait()

    agencies = FakeAgencies()
    agencies.behaviour["A"] = slow
    add(db, "k")
    # The last delivery's end wakes the stopping worker: it does not wait for its next poll, a minute away.
    w = worker(db, agencies, shutdown_grace=30, poll_interval=60)
    stop = anyio.Event()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(w.run, stop)
            await started.wait()
            stop.set()
            await anyio.sleep(0.05)
            add(db, "after-stop")  # not claimed any more
            proceed.set()
    after = rows(db)
    assert after["k"].state == "done"
    assert (after["after-stop"].state, after["after-stop"].attempts) == ("pending", 0)


async def test_worker_from_the_outbox_section(db: Database) -> None:
    section = {"attempts": 3, "lease_seconds": 40, "concurrency_per_agency": 2, "breaker_failures": 7}
    w = OutboxWorker.from_settings(db, FakeAgencies(), parse_section(OutboxSection, section, "outbox"), worker_id="w9")
    assert (w.policy.max_attempts, w.lease, w.concurrency_per_target) == (3, timedelta(seconds=40), 2)
    assert w.breakers.settings == CircuitBreakerSettings(failure_threshold=7)
    assert w.delivery_timeout < 40
    with pytest.raises(ConfigError, match=r"^\[outbox\] breaker_cooldown_seconds: must be greater than 0$"):
        parse_section(OutboxSection, {"breaker_cooldown_seconds": 0}, "outbox")
    with pytest.raises(ValueError, match="breaker_cooldown_seconds must be > 0"):
        CircuitBreakerSettings(cooldown_seconds=0)
    with pytest.raises(ValueError, match="delivery_timeout"):
        OutboxWorker(db, FakeAgencies(), lease=timedelta(seconds=10), delivery_timeout=10)
    assert OutboxWorker(db, FakeAgencies()).worker_id != OutboxWorker(db, FakeAgencies()).worker_id


def test_complete_many_completes_only_the_claims_still_held(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as database:
        ids = [add(database, key) for key in ("a", "b", "c")]
        with database.unit_of_work() as session:
            claimed = outbox.claim(session, worker_id="w1", limit=3, lease=timedelta(seconds=60))
            tokens = {m.id: m.attempts for m in claimed}
        with database.unit_of_work() as session:  # b's lease ran out and w2 took it over
            later = utcnow() + timedelta(seconds=120)
            retaken = outbox.claim(session, worker_id="w2", limit=1, lease=timedelta(seconds=60), now=later)
            assert [m.id for m in retaken] == [ids[0]]
        with database.unit_of_work() as session:
            assert outbox.complete_many(session, "w1", tokens) == {ids[1], ids[2]}
            assert outbox.complete_many(session, "w1", {}) == set()
        after = rows(database)
        assert [after[k].state for k in ("a", "b", "c")] == ["in_flight", "done", "done"]
        assert after["a"].claimed_by == "w2"


async def test_outcomes_finishing_together_are_recorded_together(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as database:
        arrived: list[str] = []
        together = anyio.Event()

        async def wait_for_all(message: MessageView) -> None:
            arrived.append(message.idempotency_key)
            if len(arrived) == 5:
                together.set()
            await together.wait()
            if message.idempotency_key == "k4":
                raise TransientError("503", upstream="A")

        agencies = FakeAgencies()
        agencies.behaviour["A"] = wait_for_all
        for i in range(5):
            add(database, f"k{i}")
        commits: list[int] = []
        event.listen(database.engine, "commit", lambda _connection: commits.append(1))
        w = worker(database, agencies, concurrency_per_target=5)
        assert await w.run_once() == 5
        writes = len(commits)
        assert writes <= 3  # the claim, then the five outcomes in at most two units of work
        assert w.counters == {"delivered": 4, "retried": 1, "dead": 0, "refused": 0, "errors": 0}
        assert states(database) == {"pending": 1, "in_flight": 0, "done": 4, "dead": 0}


async def test_a_running_worker_claims_beside_the_outcomes_it_records(db: Database) -> None:
    agencies = FakeAgencies()
    for i in range(12):
        add(db, f"m{i:02d}", target=f"T{i % 3}", dossier=f"D{i % 4}")
    w = worker(db, agencies, batch=2, max_in_flight=2, poll_interval=30)
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(w.run, stop)
        # one claim at the start; after it the worker only refills from its outcomes (the next poll is 30 s away)
        await eventually(lambda: states(db)["done"] == 12)
        stop.set()
    assert sorted(agencies.keys()) == [f"m{i:02d}" for i in range(12)]
    by_dossier: dict[str, list[str]] = {}
    for view in agencies.delivered:
        by_dossier.setdefault(view.ordering_key or "", []).append(view.idempotency_key)
    assert all(keys == sorted(keys) for keys in by_dossier.values())  # each dossier's steps in order


def test_a_claim_reaches_past_a_long_backlog_of_a_target_at_its_limit(tmp_path: Path) -> None:
    with open_database("sqlite", tmp_path) as database:
        with database.unit_of_work() as session:
            for i in range(150):  # more than a page of the claim's reading
                outbox.enqueue(session, kind="deliver", target="A", payload={}, idempotency_key=f"a{i:03d}")
            for key in ("b0", "b1"):
                outbox.enqueue(session, kind="deliver", target="B", payload={}, idempotency_key=key)
        with database.unit_of_work() as session:
            claimed = outbox.claim(
                session, worker_id="w1", limit=3, lease=timedelta(seconds=60), max_in_flight_per_target={"A": 1}
            )
            assert [m.idempotency_key for m in claimed] == ["a000", "b0", "b1"]
        with database.unit_of_work() as session:
            limits = {"A": 1, "*": 0}
            again = outbox.claim(
                session, worker_id="w1", limit=3, lease=timedelta(seconds=60), max_in_flight_per_target=limits
            )
            assert again == []  # A is at its limit and no other target may have any
