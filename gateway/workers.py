"""The outbox workers: claim due messages, deliver them, record the outcome.

An :class:`OutboxWorker` polls the outbox (:mod:`gateway.outbox`), claims a batch under a lease, and hands each
message to a :class:`Dispatcher` concurrently (at most ``max_in_flight`` at once). Outcomes that finish together are
recorded together in one unit of work (group commit), which also claims as many messages as they freed slots for, so
a busy worker needs about one transaction per group of messages rather than a claim and a record per message. A
dispatcher that can (:class:`Preparer`) reads ahead in that same unit of work what the claimed messages need (for
agency deliveries: the registrations and the dossiers as the agencies receive them), so a delivery starts with its
document instead of a unit of work of its own.
Delivery is at-least-once; each delivery carries the message's idempotency key (the dossier code plus the step), so
effects are exactly-once at every receiver that honours it.

Isolation between agencies (``target``): each target has its own concurrency limit (counted in the database across
workers, and a semaphore in this process) and its own circuit breaker, which opens after N consecutive retryable
failures; while it is open that target's messages are not claimed (they wait in the outbox, their attempts not
spent), and messages for every other target keep flowing. After the cooldown one probe message is let through
(half-open): success closes the breaker, failure opens it again. A target that answers with ``Retry-After`` (a 429
or a 5xx) is held the same way for as long as it asked (at most the policy's longest backoff), and the message's next
attempt waits at least as long.

Outcomes: return → ``done``; :class:`~adapters.errors.PermanentError` (and any non-retryable
:class:`~adapters.errors.UpstreamError`) → ``dead`` at once; :class:`~adapters.errors.TransientError`, a delivery
timeout, or an exception of any other type → retried later with backoff (the error's class name recorded), never
crashing the loop. Leases: each delivery gets a timeout shorter than the lease, so a claim is recorded before anybody
else may take it over; a worker whose claim was nevertheless retaken is refused when it records (the outbox fences
claims), and the message is delivered again under the new claim.

Shutdown: when ``stop`` is set the worker claims nothing more, gives in-flight deliveries ``shutdown_grace`` seconds
to finish, cancels the rest and releases their claims (``pending`` again, the attempt not counted).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
from sqlalchemy import Row
from sqlalchemy.orm import Session

from adapters.errors import UpstreamError
from gateway import outbox
from gateway.outbox import RetryPolicy
from gateway.store.database import Database
from gateway.store.models import OutboxMessage, utcnow

if TYPE_CHECKING:
    from gateway.sections import OutboxSection

log = logging.getLogger("gateway.workers")


@dataclass(frozen=True)
class MessageView:
    """A snapshot of a claimed outbox row, safe to pass between threads (no ORM object crosses them).

    ``attempts`` counts this delivery (1 for the first); it is also the claim's fencing token. ``prepared`` is what
    the dispatcher read ahead for it in the claim's unit of work (:class:`Preparer`), or None.
    """

    id: int
    kind: str
    target: str
    payload: dict[str, Any]
    idempotency_key: str
    attempts: int
    ordering_key: str | None = None
    prepared: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, message: OutboxMessage | Row[Any]) -> MessageView:
        """The snapshot of a message: a mapped object (its payload copied) or a row a claim returned (whose payload
        is already its own)."""
        return cls(
            id=message.id,
            kind=message.kind,
            target=message.target,
            payload=message.payload if isinstance(message, Row) else copy.deepcopy(message.payload),
            idempotency_key=message.idempotency_key,
            attempts=message.attempts,
            ordering_key=message.ordering_key,
        )


class Dispatcher(Protocol):
    """Delivers one message; raises :mod:`adapters.errors` to say whether trying again may help."""

    async def dispatch(self, message: MessageView) -> None: ...


@runtime_checkable
class Preparer(Protocol):
    """A dispatcher that reads ahead: given the messages just claimed, in the claim's unit of work, it returns them
    with ``prepared`` set where it read what their delivery needs (all of them together, instead of one unit of
    work per delivery). A failure here costs nothing but the reading ahead: the worker rolls it back to a savepoint
    and each delivery reads for itself."""

    def prepare(self, session: Session, messages: list[MessageView]) -> list[MessageView]: ...


#: Told of each recorded outcome: the message, its new state (``done``, ``pending`` to retry, ``dead``), how long the
#: delivery took in seconds, and whether the upstream answered (delivered, or refused it).
Observer = Callable[[MessageView, str, float, bool], None]


@dataclass(frozen=True)
class CircuitBreakerSettings:
    """A target's breaker opens after ``failure_threshold`` consecutive retryable failures, for ``cooldown_seconds``."""

    failure_threshold: int = 5
    cooldown_seconds: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.failure_threshold, bool) or not isinstance(self.failure_threshold, int):
            raise ValueError(f"[outbox] breaker_failures must be a whole number, got {self.failure_threshold!r}")
        if self.failure_threshold < 1:
            raise ValueError(f"[outbox] breaker_failures must be ≥ 1, got {self.failure_threshold!r}")
        if isinstance(self.cooldown_seconds, bool) or not isinstance(self.cooldown_seconds, int | float):
            raise ValueError(f"[outbox] breaker_cooldown_seconds must be a number, got {self.cooldown_seconds!r}")
        if self.cooldown_seconds <= 0:
            raise ValueError(f"[outbox] breaker_cooldown_seconds must be > 0, got {self.cooldown_seconds!r}")

    @classmethod
    def of(cls, outbox: OutboxSection) -> CircuitBreakerSettings:
        """The breaker of the ``[outbox]`` section (``breaker_failures``, ``breaker_cooldown_seconds``)."""
        return cls(failure_threshold=outbox.failure_threshold, cooldown_seconds=outbox.cooldown_seconds)


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreakers:
    """One circuit breaker per target (in this process)."""

    def __init__(self, settings: CircuitBreakerSettings, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._monotonic = monotonic
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._held_until: dict[str, float] = {}

    def state(self, target: str) -> str:
        if self._held(target):
            return OPEN
        until = self._open_until.get(target)
        if until is None:
            return CLOSED
        return OPEN if self._monotonic() < until else HALF_OPEN

    def limits(self) -> dict[str, int]:
        """The in-flight limit the breakers impose: 0 while open or held, one probe when half-open."""
        limits = {target: 0 if self.state(target) == OPEN else 1 for target in self._open_until}
        limits.update({target: 0 for target in list(self._held_until) if self._held(target)})
        return limits

    def held_back(self) -> dict[str, bool]:
        """Every target this process knows a breaker state of, and whether it is sent nothing now (open or held)."""
        known = {*self._failures, *self._open_until, *self._held_until}
        return {target: self.state(target) == OPEN for target in sorted(known)}

    def _held(self, target: str) -> bool:
        until = self._held_until.get(target)
        if until is None:
            return False
        if self._monotonic() < until:
            return True
        del self._held_until[target]
        return False

    def hold(self, target: str, seconds: float) -> None:
        """Send ``target`` nothing for ``seconds`` (it asked to be left alone that long: ``Retry-After``); deliveries
        already under way that succeed meanwhile do not end the hold."""
        if seconds <= 0:
            return
        until = self._monotonic() + seconds
        if until > self._held_until.get(target, 0.0):
            self._held_until[target] = until
            log.warning("circuit held at the upstream's request", extra={"target": target, "seconds": seconds})

    def success(self, target: str) -> None:
        self._failures.pop(target, None)
        if self._open_until.pop(target, None) is not None:
            log.info("circuit closed", extra={"target": target})

    def failure(self, target: str) -> None:
        failures = self._failures.get(target, 0) + 1
        self._failures[target] = failures
        if failures >= self.settings.failure_threshold:
            was = self.state(target)
            self._open_until[target] = self._monotonic() + self.settings.cooldown_seconds
            if was != OPEN:
                log.warning(
                    "circuit opened",
                    extra={"target": target, "failures": failures, "cooldown_seconds": self.settings.cooldown_seconds},
                )


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retryable: bool = False
    error: str = ""
    retry_after: float | None = None  # seconds the upstream asked to wait (Retry-After)


@dataclass
class _Recorded:
    """An outcome waiting to be recorded."""

    view: MessageView
    outcome: _Outcome
    seconds: float
    written: asyncio.Event = field(default_factory=asyncio.Event)


#: The most outcomes recorded in one unit of work.
_RECORD_BATCH = 200


def classify(exc: BaseException) -> _Outcome:
    """A failed delivery's outcome: retryable unless the error says it is permanent."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, UpstreamError):
        return _Outcome(ok=False, retryable=exc.retryable, error=text, retry_after=exc.retry_after)
    return _Outcome(ok=False, retryable=True, error=text)


def default_worker_id() -> str:
    """Unique per process: host, pid and a random suffix (a restarted process never reuses a dead one's id)."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{secrets.token_hex(4)}"


class OutboxWorker:
    """Delivers outbox messages through ``dispatcher`` until stopped; see the module documentation.

    ``batch`` is the most messages claimed at once, ``max_in_flight`` (default ``batch``) the most delivered at once
    by this worker, ``concurrency_per_target`` the most in flight per target (default the policy's
    ``concurrency_per_agency``), ``lease`` the claim's lease (default the policy's ``lease_seconds``) and
    ``delivery_timeout`` (default three quarters of the lease, always shorter) how long one delivery may take;
    ``observer`` (:data:`Observer`) is told of every recorded outcome (the daemon's metrics).
    """

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        *,
        worker_id: str | None = None,
        policy: RetryPolicy | None = None,
        lease: timedelta | None = None,
        batch: int = 20,
        max_in_flight: int | None = None,
        concurrency_per_target: int | None = None,
        breaker: CircuitBreakerSettings | None = None,
        delivery_timeout: float | None = None,
        poll_interval: float = 0.2,
        shutdown_grace: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        self.db = db
        self.observer = observer
        self.dispatcher = dispatcher
        self.worker_id = worker_id or default_worker_id()
        self.policy = policy or RetryPolicy()
        self.lease = lease if lease is not None else self.policy.lease
        if self.lease <= timedelta(0):
            raise ValueError("outbox worker: the lease must be positive")
        self.batch = batch
        self.max_in_flight = max_in_flight or batch
        self.concurrency_per_target = concurrency_per_target or self.policy.concurrency_per_agency
        if self.batch < 1 or self.max_in_flight < 1 or self.concurrency_per_target < 1:
            raise ValueError("outbox worker: batch, max_in_flight and concurrency_per_target must be ≥ 1")
        lease_seconds = self.lease.total_seconds()
        self.delivery_timeout = delivery_timeout if delivery_timeout is not None else lease_seconds * 0.75
        if not 0 < self.delivery_timeout < lease_seconds:
            raise ValueError("outbox worker: delivery_timeout must be positive and shorter than the lease")
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.breakers = CircuitBreakers(breaker or CircuitBreakerSettings(), monotonic)
        self._clock = clock
        self._semaphores: dict[str, anyio.Semaphore] = {}
        self._in_flight: dict[int, MessageView] = {}
        self._wake: anyio.Event | None = None
        self._claim_lock = anyio.Lock(fast_acquire=True)
        self._outcomes: list[_Recorded] = []
        self._recording = False
        #: Starts deliveries of messages claimed beside recorded outcomes (set while :meth:`run` loops).
        self._refill: Callable[[list[MessageView]], None] | None = None
        #: Outcomes recorded by this worker, for metrics: delivered, retried, dead, refused (claim lost), errors.
        self.counters: dict[str, int] = dict.fromkeys(("delivered", "retried", "dead", "refused", "errors"), 0)

    @classmethod
    def from_settings(cls, db: Database, dispatcher: Dispatcher, outbox: OutboxSection, **kwargs: Any) -> OutboxWorker:
        """A worker with the retry policy and circuit breaker of the ``[outbox]`` section."""
        return cls(db, dispatcher, policy=RetryPolicy.of(outbox), breaker=CircuitBreakerSettings.of(outbox), **kwargs)

    # -- the loop -----------------------------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the polling loop now (new messages were enqueued). Call it from the worker's event loop."""
        if self._wake is not None:
            self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def breaker_state(self, target: str) -> str:
        return self.breakers.state(target)

    async def run(self, stop: anyio.Event | asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish or release the in-flight deliveries."""
        self._wake = anyio.Event()
        log.info("outbox worker started", extra={"worker_id": self.worker_id})
        try:
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(self._watch, stop)
                async with anyio.create_task_group() as deliveries:

                    def start(views: list[MessageView]) -> None:
                        if not stop.is_set():
                            for view in views:
                                deliveries.start_soon(self._deliver, view)

                    self._refill = start
                    while not stop.is_set():
                        claimed = await self._claim_free()
                        start(claimed)
                        if not claimed:
                            await self._sleep()
                    self._refill = None
                    with anyio.move_on_after(self.shutdown_grace):
                        while self._in_flight:
                            await self._sleep()
                    deliveries.cancel_scope.cancel()
                watchers.cancel_scope.cancel()
        finally:
            self._refill = None
            await self._release()
            log.info("outbox worker stopped", extra={"worker_id": self.worker_id})

    async def run_once(self) -> int:
        """Claim one batch, deliver it, record the outcomes; the number of messages processed."""
        if self._wake is None:
            self._wake = anyio.Event()
        claimed = await self._claim_free()
        if claimed:
            async with anyio.create_task_group() as deliveries:
                for view in claimed:
                    deliveries.start_soon(self._deliver, view)
        return len(claimed)

    async def _watch(self, stop: anyio.Event | asyncio.Event) -> None:
        await stop.wait()
        self.notify()

    async def _sleep(self) -> None:
        wake = self._wake
        assert wake is not None
        with anyio.move_on_after(self.poll_interval):
            await wake.wait()
        if wake.is_set():
            self._wake = anyio.Event()

    def _limits(self) -> dict[str, int]:
        limits = {outbox.ANY_TARGET: self.concurrency_per_target}
        limits.update(self.breakers.limits())
        return limits

    def _free(self) -> int:
        return min(self.batch, self.max_in_flight - len(self._in_flight))

    def _claimer(self, free: int) -> Callable[[Session], list[MessageView]]:
        """The claim of up to ``free`` messages, to run in a unit of work."""
        limits = self._limits()
        now = self._clock()

        def work(session: Session) -> list[MessageView]:
            messages = outbox.claim(
                session,
                worker_id=self.worker_id,
                limit=free,
                lease=self.lease,
                now=now,
                max_in_flight_per_target=limits,
            )
            return self._prepared(session, [MessageView.of(message) for message in messages])

        return work

    def _prepared(self, session: Session, views: list[MessageView]) -> list[MessageView]:
        """``views`` as the dispatcher read ahead for them (see :class:`Preparer`), or as they are.

        A failed reading ahead leaves the claim to commit: on PostgreSQL, where a refused statement aborts the whole
        transaction, it runs in a savepoint; on SQLite a refused statement fails alone, and the reading ahead only
        reads, so it needs none (a savepoint and its release cost a tenth of a claim there)."""
        if not views or not isinstance(self.dispatcher, Preparer):
            return views
        try:
            with session.begin_nested() if session.get_bind().dialect.name == "postgresql" else nullcontext():
                prepared = self.dispatcher.prepare(session, views)
        except Exception:
            log.warning("outbox: reading ahead failed", exc_info=True, extra={"worker_id": self.worker_id})
            return views
        return prepared

    async def _claim_free(self) -> list[MessageView]:
        async with self._claim_lock:
            free = self._free()
            if free <= 0:
                return []
            try:
                claimed = await self.db.write(self._claimer(free))
            except Exception:  # the database may be briefly unreachable: poll again later
                self.counters["errors"] += 1
                log.exception("outbox claim failed", extra={"worker_id": self.worker_id})
                return []
            self._hold(claimed)
            return claimed

    def _hold(self, claimed: list[MessageView]) -> None:
        for view in claimed:
            self._in_flight[view.id] = view

    # -- one delivery -------------------------------------------------------------------------------------------

    def _semaphore(self, target: str) -> anyio.Semaphore:
        semaphore = self._semaphores.get(target)
        if semaphore is None:
            # Taken without a pass through the event loop when free: the delivery awaits right after.
            semaphore = self._semaphores[target] = anyio.Semaphore(self.concurrency_per_target, fast_acquire=True)
        return semaphore

    async def _deliver(self, view: MessageView) -> None:
        self._in_flight[view.id] = view
        try:
            async with self._semaphore(view.target):
                began = time.perf_counter()
                outcome = await self._dispatch(view)
                seconds = time.perf_counter() - began
            if outcome.ok:
                self.breakers.success(view.target)
            elif outcome.retryable:
                self.breakers.failure(view.target)
                if outcome.retry_after is not None:
                    self.breakers.hold(view.target, min(outcome.retry_after, self.policy.max_seconds))
            else:  # the agency answered (a refusal): it is reachable
                self.breakers.success(view.target)
            await self._record(view, outcome, seconds)
        finally:
            self._in_flight.pop(view.id, None)
            if self._refill is None:  # stopping, or one batch: the loop waits for the last delivery
                self.notify()

    async def _dispatch(self, view: MessageView) -> _Outcome:
        try:
            # asyncio's own timeout (the workers run on asyncio's loops): a cancel scope costs several times more.
            async with asyncio.timeout(self.delivery_timeout):
                await self.dispatcher.dispatch(view)
        except TimeoutError as exc:
            detail = str(exc) or f"no answer within {self.delivery_timeout:g} s"
            return _Outcome(ok=False, retryable=True, error=f"{type(exc).__name__}: {detail}")
        except Exception as exc:  # noqa: BLE001 - any failure of one delivery is recorded, never crashes the loop
            return classify(exc)
        return _Outcome(ok=True)

    async def _record(self, view: MessageView, outcome: _Outcome, seconds: float = 0.0) -> None:
        """Record the outcome of one delivery. Outcomes that finish together are recorded together (group commit):
        the first waiting delivery writes every outcome queued meanwhile in one unit of work, and while the loop runs
        that same unit of work claims as many messages as the recorded ones freed slots for."""
        item = _Recorded(view, outcome, seconds)
        self._outcomes.append(item)
        if self._recording:
            await item.written.wait()
            return
        self._recording = True
        try:
            while self._outcomes:
                batch, self._outcomes = self._outcomes[:_RECORD_BATCH], self._outcomes[_RECORD_BATCH:]
                await self._write(batch)
        finally:
            self._recording = False

    async def _write(self, batch: list[_Recorded]) -> None:
        """Record ``batch`` (and claim its freed slots) in one unit of work; tell every waiting delivery."""
        now = self._clock()
        worker_id = self.worker_id
        async with self._claim_lock:
            refill = self._refill
            free = min(self.batch, self.max_in_flight - len(self._in_flight) + len(batch))
            claimer = self._claimer(free) if refill is not None and free > 0 else None

            def work(session: Session) -> tuple[dict[int, str | None], list[MessageView]]:
                claims = {item.view.id: item.view.attempts for item in batch if item.outcome.ok}
                completed = outbox.complete_many(session, worker_id, claims, now=now)
                states: dict[int, str | None] = {i: outbox.DONE if i in completed else None for i in claims}
                for item in batch:
                    if not item.outcome.ok:
                        states[item.view.id] = outbox.fail(
                            session,
                            item.view.id,
                            worker_id,
                            item.outcome.error,
                            retryable=item.outcome.retryable,
                            now=now,
                            policy=self.policy,
                            attempt=item.view.attempts,
                            retry_after=item.outcome.retry_after,
                        )
                return states, claimer(session) if claimer is not None else []

            try:
                states, claimed = await self.db.write(work)
            except Exception:  # unrecorded: the leases expire and the messages are delivered again
                self.counters["errors"] += len(batch)
                log.exception("outbox outcomes not recorded", extra={"worker_id": worker_id, "messages": len(batch)})
                states, claimed = {}, []
            for item in batch:
                self._in_flight.pop(item.view.id, None)
            if claimed and self._refill is not None:  # else: released with the worker's other claims at the end
                self._hold(claimed)
                self._refill(claimed)
            if len(claimed) < free:  # slots left free: the loop claims again, now or at its next poll
                self.notify()
        for item in batch:
            if item.view.id in states:
                self._recorded(item, states[item.view.id])
            item.written.set()

    def _recorded(self, item: _Recorded, state: str | None) -> None:
        view, outcome = item.view, item.outcome
        fields = {
            "worker_id": self.worker_id,
            "message_id": view.id,
            "kind": view.kind,
            "target": view.target,
            "attempt": view.attempts,
        }
        if state is not None and self.observer is not None:
            self.observer(view, state, item.seconds, outcome.ok or not outcome.retryable)
        if state is None:
            self.counters["refused"] += 1
            log.warning("outbox claim lost before the outcome was recorded", extra=fields)
        elif state == outbox.DONE:
            self.counters["delivered"] += 1
            log.debug("outbox message delivered", extra=fields)
        elif state == outbox.DEAD:
            self.counters["dead"] += 1
            log.warning("outbox message dead", extra={**fields, "error": outcome.error})
        else:
            self.counters["retried"] += 1
            log.info("outbox delivery failed, will retry", extra={**fields, "error": outcome.error})

    async def _release(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                released = await self.db.write(lambda session: outbox.release(session, self.worker_id))
            except Exception:  # unreleased claims are retaken when their leases expire
                log.exception("outbox release failed", extra={"worker_id": self.worker_id})
                return
        if released:
            log.info("outbox claims released", extra={"worker_id": self.worker_id, "released": released})
