"""The transactional outbox, storage side: enqueue, claims and leases, ordering, retries, dead letters, redrive.

Every test runs on SQLite (a temporary file) and, when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set, on PostgreSQL too
(in a schema of its own, dropped afterwards).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import outbox
from gateway.config import ConfigError, parse_section
from gateway.outbox import RetryPolicy
from gateway.sections import OutboxSection
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from tests.databases import BACKENDS, open_database

NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # after every row's default next_attempt_at (the real clock)
LEASE = timedelta(seconds=30)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        yield database


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def add(db: Database, key: str, *, target: str = "A", dossier: str | None = None, **kwargs) -> int:
    with db.unit_of_work() as session:
        message = outbox.enqueue(
            session,
            kind=kwargs.pop("kind", "deliver"),
            target=target,
            payload=kwargs.pop("payload", {"key": key}),
            idempotency_key=key,
            ordering_key=dossier,
            **kwargs,
        )
        return message.id


def claim(db: Database, worker: str = "w1", *, now: datetime = NOW, limit: int = 50, **kwargs) -> list[int]:
    with db.unit_of_work() as session:
        messages = outbox.claim(session, worker_id=worker, limit=limit, lease=LEASE, now=now, **kwargs)
        return [message.id for message in messages]


def row(db: Database, message_id: int) -> OutboxMessage:
    with db.unit_of_work() as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        session.expunge(message)
        return message


def complete(db: Database, message_id: int, worker: str = "w1", **kwargs) -> bool:
    with db.unit_of_work() as session:
        return outbox.complete(session, message_id, worker, **kwargs)


def fail(db: Database, message_id: int, worker: str = "w1", error="boom", *, retryable=True, now=NOW, policy=None):
    with db.unit_of_work() as session:
        return outbox.fail(
            session, message_id, worker, error, retryable=retryable, now=now, policy=policy or RetryPolicy()
        )


# ---------------------------------------------------------------------------------------------------------------------
# Enqueue


def test_enqueue_is_idempotent_on_the_key(db: Database) -> None:
    first = add(db, "D1:deliver", payload={"v": 1})
    again = add(db, "D1:deliver", payload={"v": 2})
    assert again == first
    with db.unit_of_work() as session:
        assert outbox.stats(session)[outbox.PENDING] == 1
        # inside one transaction too
        same = outbox.enqueue(session, kind="deliver", target="A", payload={}, idempotency_key="D1:deliver")
        assert same.id == first
    message = row(db, first)
    assert message.payload == {"v": 1}  # the first message is kept as it was
    assert (message.state, message.attempts) == ("pending", 0)


def test_enqueue_rolls_back_with_the_unit_of_work(db: Database) -> None:
    with pytest.raises(RuntimeError), db.unit_of_work() as session:
        outbox.enqueue(session, kind="deliver", target="A", payload={}, idempotency_key="k")
        raise RuntimeError("the change that caused it failed")
    with db.unit_of_work() as session:
        assert outbox.list_messages(session) == []


def test_message_key_is_dossier_code_plus_step() -> None:
    assert outbox.message_key("000.00.23.H38-261122-0001", "deliver") == "000.00.23.H38-261122-0001:deliver"


# ---------------------------------------------------------------------------------------------------------------------
# Claims


def test_claim_takes_due_messages_in_id_order_and_sets_the_lease(db: Database) -> None:
    ids = [add(db, f"k{i}", target="AB"[i % 2]) for i in range(5)]
    later = add(db, "later", not_before=NOW + timedelta(seconds=10))
    assert claim(db, limit=3) == ids[:3]
    assert claim(db, "w2") == ids[3:]
    message = row(db, ids[0])
    assert (message.state, message.claimed_by, message.attempts) == ("in_flight", "w1", 1)
    assert message.lease_until == NOW + LEASE
    assert claim(db, "w3") == []  # everything held, `later` not yet due
    assert claim(db, "w3", now=NOW + timedelta(seconds=10)) == [later]  # the leases still hold


def test_a_claim_and_its_completion_agree_with_the_objects_of_their_unit_of_work(db: Database) -> None:
    with db.unit_of_work() as session:
        message = outbox.enqueue(
            session, kind="deliver", target="A", payload={}, idempotency_key="same-unit", not_before=NOW + LEASE
        )
        message.next_attempt_at = NOW  # a change not yet flushed
        [claimed] = outbox.claim(session, worker_id="w1", limit=5, lease=LEASE, now=NOW)
        assert (claimed.id, claimed.state, claimed.attempts) == (message.id, "in_flight", 1)
        assert (message.state, message.claimed_by, message.attempts) == ("in_flight", "w1", 1)
        assert outbox.complete_many(session, "w1", {message.id: 1}, now=NOW) == {message.id}
        assert (message.state, message.done_at, message.lease_until) == ("done", NOW, None)
    assert row(db, message.id).state == "done"


def test_messages_of_one_dossier_are_claimed_one_at_a_time_in_order(db: Database) -> None:
    d1 = [add(db, f"D1:{step}", dossier="D1") for step in ("deliver", "supplement", "withdraw")]
    d2 = add(db, "D2:deliver", dossier="D2")
    free = add(db, "no-order")
    assert claim(db) == [d1[0], d2, free]
    assert claim(db, "w2") == []  # D1's next step waits for its first
    assert complete(db, d2) and complete(db, free)
    assert complete(db, d1[0])
    assert claim(db, "w2") == [d1[1]]
    # a failed step waiting for its retry still holds the dossier's later steps back
    assert fail(db, d1[1], "w2") == "pending"
    assert claim(db, "w3", now=NOW + timedelta(seconds=1)) == []
    assert claim(db, "w3", now=NOW + timedelta(hours=1)) == [d1[1]]
    assert complete(db, d1[1], "w3")
    assert claim(db, "w3", now=NOW + timedelta(hours=1)) == [d1[2]]


def test_a_dead_letter_parks_only_its_own_dossier(db: Database) -> None:
    poison = add(db, "D1:deliver", dossier="D1", target="A")
    after_poison = add(db, "D1:supplement", dossier="D1", target="A")
    other_dossier = add(db, "D2:deliver", dossier="D2", target="A")
    other_agency = add(db, "D3:deliver", dossier="D3", target="B")
    assert claim(db) == [poison, other_dossier, other_agency]
    assert fail(db, poison, error="PermanentError: 422 unknown procedure", retryable=False) == "dead"
    assert complete(db, other_dossier) and complete(db, other_agency)
    # the agency's other dossiers keep flowing; only D1's later step waits for the operator
    newer = add(db, "D4:deliver", dossier="D4", target="A")
    newer_d2 = add(db, "D2:supplement", dossier="D2", target="A")
    assert claim(db, "w2") == [newer, newer_d2]
    assert row(db, after_poison).state == "pending"
    with db.unit_of_work() as session:
        assert outbox.redrive(session, poison) == 1
    assert claim(db, "w3") == [poison]
    assert complete(db, poison, "w3")
    assert claim(db, "w3") == [after_poison]


def test_per_target_in_flight_limit(db: Database) -> None:
    a = [add(db, f"a{i}", target="A") for i in range(5)]
    b = [add(db, f"b{i}", target="B") for i in range(2)]
    assert claim(db, max_in_flight_per_target=2) == [a[0], a[1], *b]
    assert claim(db, "w2", max_in_flight_per_target=2) == []  # counted across workers
    assert complete(db, a[0])
    assert claim(db, "w2", max_in_flight_per_target=2) == [a[2]]
    # a mapping: per-target limits, "*" for the others; 0 claims nothing for that target (an open breaker)
    c = [add(db, f"c{i}", target="C") for i in range(3)]
    assert claim(db, "w3", max_in_flight_per_target={"A": 0, "*": 1}) == [c[0]]
    assert claim(db, "w3", max_in_flight_per_target={"A": 5}) == [a[3], a[4], c[1], c[2]]


def test_a_backlog_for_one_target_does_not_crowd_others_out_of_a_batch(db: Database) -> None:
    backlog = [add(db, f"a{i}", target="A") for i in range(30)]
    b = add(db, "b", target="B")
    assert claim(db, limit=5, max_in_flight_per_target=3) == [*backlog[:3], b]


def test_an_expired_lease_is_retaken_and_the_old_claim_is_refused(db: Database) -> None:
    message = add(db, "k")
    assert claim(db, "w1") == [message]
    assert claim(db, "w2", now=NOW + LEASE) == []  # still leased
    assert claim(db, "w2", now=NOW + LEASE + timedelta(seconds=1)) == [message]
    retaken = row(db, message)
    assert (retaken.claimed_by, retaken.attempts) == ("w2", 2)
    # the first worker finally answers: refused, the new claim is untouched
    assert complete(db, message, "w1") is False
    assert fail(db, message, "w1", retryable=False) is None
    assert (row(db, message).state, row(db, message).claimed_by) == ("in_flight", "w2")
    assert complete(db, message, "w2", attempt=2)
    done = row(db, message)
    assert (done.state, done.claimed_by, done.lease_until) == ("done", "w2", None)
    assert done.done_at is not None
    assert complete(db, message, "w2") is False  # done is final


def test_the_attempt_fences_an_older_claim_of_the_same_worker_id(db: Database) -> None:
    message = add(db, "k")
    assert claim(db, "w1") == [message]
    assert claim(db, "w1", now=NOW + LEASE + timedelta(seconds=1)) == [message]
    assert complete(db, message, "w1", attempt=1) is False
    with db.unit_of_work() as session:
        assert outbox.fail(session, message, "w1", "late", retryable=True, now=NOW, attempt=1) is None
    assert complete(db, message, "w1", attempt=2)


def test_a_held_lease_can_be_renewed(db: Database) -> None:
    message = add(db, "k")
    assert claim(db, "w1") == [message]
    with db.unit_of_work() as session:
        assert outbox.renew(session, message, "w1", lease=LEASE, now=NOW + timedelta(seconds=20), attempt=1)
        assert not outbox.renew(session, message, "w2", lease=LEASE, now=NOW + timedelta(seconds=20))
    assert row(db, message).lease_until == NOW + timedelta(seconds=50)
    assert claim(db, "w2", now=NOW + timedelta(seconds=40)) == []


def test_release_gives_claims_back_without_counting_the_attempt(db: Database) -> None:
    first, second = add(db, "k1"), add(db, "k2")
    other = add(db, "k3")
    assert claim(db, "w1", limit=2) == [first, second]
    assert claim(db, "w2") == [other]
    with db.unit_of_work() as session:
        assert outbox.release(session, "w1") == 2
    released = row(db, first)
    assert (released.state, released.attempts, released.claimed_by, released.lease_until) == ("pending", 0, None, None)
    assert row(db, other).state == "in_flight"  # another worker's claim is not touched
    assert claim(db, "w3") == [first, second]  # at once, not after the lease


# ---------------------------------------------------------------------------------------------------------------------
# Failures, retries and dead letters


def test_retry_schedule_grows_exponentially_with_bounded_jitter(db: Database) -> None:
    policy = RetryPolicy(max_attempts=12, initial_seconds=2, max_seconds=600, jitter_seconds=2)
    message = add(db, "k")
    now = NOW
    lower_bounds = []
    for attempt in range(1, 12):
        assert claim(db, now=now) == [message]
        assert fail(db, message, error="TransientError: 503", now=now, policy=policy) == "pending"
        retried = row(db, message)
        assert (retried.state, retried.attempts, retried.claimed_by) == ("pending", attempt, None)
        assert retried.last_error == "TransientError: 503"
        delay = (retried.next_attempt_at - now).total_seconds()
        low, high = policy.backoff_bounds(attempt)
        assert low == min(2 * 2 ** (attempt - 1), 600)
        assert low - 1e-6 <= delay <= high + 1e-6
        assert claim(db, "other", now=retried.next_attempt_at - timedelta(milliseconds=1)) == []  # not before
        lower_bounds.append(low)
        now = retried.next_attempt_at
    assert lower_bounds == sorted(lower_bounds) and lower_bounds[-1] == 600  # grows, then capped


def test_backoff_is_jittered_within_bounds() -> None:
    policy = RetryPolicy(initial_seconds=2, max_seconds=600, jitter_seconds=2)
    for attempt in (1, 3, 6):
        low, high = policy.backoff_bounds(attempt)
        waits = {policy.backoff_seconds(attempt) for _ in range(200)}
        assert all(low <= wait <= high for wait in waits)
        assert len(waits) > 1  # jittered, not a fixed schedule
    assert policy.backoff_seconds(10_000) == 600  # no overflow, capped
    assert RetryPolicy(jitter_seconds=0).backoff_seconds(2) == 4


def test_last_attempt_makes_the_message_dead(db: Database) -> None:
    policy = RetryPolicy(max_attempts=3, initial_seconds=1, max_seconds=1, jitter_seconds=0)
    message = add(db, "k")
    now = NOW
    states = []
    for _ in range(3):
        assert claim(db, now=now) == [message]
        states.append(fail(db, message, error=TimeoutError("agency did not answer"), now=now, policy=policy))
        now += timedelta(seconds=5)
    assert states == ["pending", "pending", "dead"]
    dead = row(db, message)
    assert (dead.state, dead.attempts, dead.claimed_by) == ("dead", 3, "w1")
    assert dead.last_error == "TimeoutError: agency did not answer"
    assert claim(db, now=now + timedelta(days=1)) == []  # parked until redriven


def test_a_permanent_error_is_dead_at_once(db: Database) -> None:
    message = add(db, "k")
    claim(db)
    assert fail(db, message, error="PermanentError: 400 bad dossier", retryable=False) == "dead"
    dead = row(db, message)
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 1, "PermanentError: 400 bad dossier")


def test_long_errors_are_cut(db: Database) -> None:
    message = add(db, "k")
    claim(db)
    fail(db, message, error="x" * 10_000, retryable=False)
    assert len(row(db, message).last_error) == outbox.MAX_ERROR_LENGTH


def test_redrive_one_or_all_dead_letters(db: Database) -> None:
    ids = [add(db, f"k{i}") for i in range(4)]
    claim(db)
    for message in ids[:3]:
        fail(db, message, retryable=False)
    with db.unit_of_work() as session:
        assert outbox.stats(session) == {"pending": 0, "in_flight": 1, "done": 0, "dead": 3}
        assert [m.id for m in outbox.list_messages(session, state="dead")] == ids[:3]
        assert outbox.redrive(session, ids[0], now=NOW) == 1
        assert outbox.redrive(session, ids[3]) == 0  # in flight: not a dead letter
        assert outbox.redrive(session, 999_999) == 0
    redriven = row(db, ids[0])
    assert (redriven.state, redriven.attempts, redriven.claimed_by, redriven.next_attempt_at) == (
        "pending",
        0,
        None,
        NOW,
    )
    assert redriven.last_error == "boom"  # kept for the operator until the next outcome
    with db.unit_of_work() as session:
        assert outbox.redrive(session, all_dead=True, now=NOW) == 2
        assert outbox.stats(session) == {"pending": 3, "in_flight": 1, "done": 0, "dead": 0}
        with pytest.raises(ValueError, match="redrive"):
            outbox.redrive(session)
        with pytest.raises(ValueError, match="redrive"):
            outbox.redrive(session, ids[0], all_dead=True)
    assert claim(db, "w2") == ids[:3]
    assert row(db, ids[0]).attempts == 1


def test_list_messages_filters_and_pages(db: Database) -> None:
    ids = [add(db, f"k{i}", target="AB"[i % 2]) for i in range(6)]
    with db.unit_of_work() as session:
        assert [m.id for m in outbox.list_messages(session, limit=2)] == ids[:2]
        assert [m.id for m in outbox.list_messages(session, after_id=ids[3])] == ids[4:]
        assert [m.id for m in outbox.list_messages(session, target="B")] == ids[1::2]
        assert outbox.list_messages(session, state="done") == []
        with pytest.raises(ValueError, match="unknown outbox state"):
            outbox.list_messages(session, state="lost")


# ---------------------------------------------------------------------------------------------------------------------
# Concurrent claims (threads with their own connections: the same locking as separate processes)


def test_concurrent_claims_never_share_a_message(db: Database) -> None:
    total = 150
    with db.unit_of_work() as session:
        for i in range(total):
            outbox.enqueue(
                session,
                kind="deliver",
                target=f"T{i % 5}",
                payload={},
                idempotency_key=f"k{i}",
                ordering_key=f"D{i % 40}",
            )
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(name: str) -> None:
        mine = claims.setdefault(name, [])
        try:
            start.wait()
            idle = 0
            while idle < 3:
                with db.unit_of_work() as session:
                    got = outbox.claim(session, worker_id=name, limit=7, lease=LEASE, now=NOW)
                    ids = [message.id for message in got]
                    for message_id in ids:
                        assert outbox.complete(session, message_id, name)
                mine.extend(ids)
                idle = idle + 1 if not ids else 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    claimed = [message_id for ids in claims.values() for message_id in ids]
    assert len(claimed) == len(set(claimed)) == total
    with db.unit_of_work() as session:
        assert outbox.stats(session)["done"] == total


# ---------------------------------------------------------------------------------------------------------------------
# Configuration


def policy_of(section: dict[str, object] | None) -> RetryPolicy:
    return RetryPolicy.of(parse_section(OutboxSection, section, "outbox"))


def test_retry_policy_from_the_outbox_section() -> None:
    assert policy_of(None) == RetryPolicy()
    policy = policy_of(
        {
            "attempts": 5,
            "backoff_initial_seconds": 1.5,
            "backoff_max_seconds": 120,
            "jitter_seconds": 0,
            "lease_seconds": 90,
            "concurrency_per_agency": 2,
            "breaker_failures": 3,
        }
    )
    assert policy == RetryPolicy(
        max_attempts=5,
        initial_seconds=1.5,
        max_seconds=120,
        jitter_seconds=0,
        lease_seconds=90,
        concurrency_per_agency=2,
    )
    assert policy.lease == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"attempts": 0}, "attempts: must be at least 1"),
        ({"attempts": 2.5}, "attempts: must be a whole number"),
        ({"attempts": True}, "attempts: must be a whole number"),
        ({"backoff_initial_seconds": "2s"}, "backoff_initial_seconds: must be a number"),
        ({"backoff_initial_seconds": 0}, "backoff_initial_seconds: must be greater than 0"),
        (
            {"backoff_initial_seconds": 10, "backoff_max_seconds": 5},
            r"backoff_max_seconds: must be at least backoff_initial_seconds \(10\)",
        ),
        ({"jitter_seconds": -1}, "jitter_seconds: must be at least 0"),
        ({"lease_seconds": 0}, "lease_seconds: must be greater than 0"),
        ({"concurrency_per_agency": 0}, "concurrency_per_agency: must be at least 1"),
        ({"atempts": 3}, "atempts: unknown key"),
    ],
)
def test_bad_retry_policy_is_one_clear_error(section, message) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        policy_of(section)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("[outbox] ")


def test_retry_policy_checks_types_before_ranges() -> None:
    with pytest.raises(ValueError, match="backoff_initial_seconds must be a number"):
        RetryPolicy(initial_seconds="2")  # type: ignore[arg-type]
