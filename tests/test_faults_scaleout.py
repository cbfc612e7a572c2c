"""Scale-out under kills: three ``dvc-gateway worker`` processes on PostgreSQL drain a backlog while one of them is
killed with SIGKILL in the middle of its deliveries each time another fifth of the backlog is delivered (every few
seconds), and started again.

The backlog is ``portal.webhook`` messages (self-contained payloads, no dossier rows needed) delivered to a receiver
on 127.0.0.1 that applies each ``Idempotency-Key`` once and counts repeats. The database is a private cluster made
by the test (:mod:`tests.pg_cluster`). Every wait has a limit; nothing asserts a timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import messages, outbox
from gateway.store.database import Database
from gateway.store.models import OutboxMessage
from tests.pg_cluster import private_cluster
from tests.servers import ServerThread

ROOT = Path(__file__).resolve().parents[1]
#: The backlog: 400 dossiers × 5 portal notices (2,000 messages), each dossier's notices in order.
DOSSIERS, NOTICES = 400, 5
TOTAL = DOSSIERS * NOTICES
#: A worker is killed each time another fifth of the backlog is delivered: four kills.
KILLS_AT = 5
WORKERS = 3


class Receiver:
    """The portal's webhook: each idempotency key's effect applied once, every receipt counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.receipts: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        #: Cleared, answers wait: the workers' deliveries stay in flight until a worker has been killed mid-work.
        self.answering = threading.Event()
        self.answering.set()

    async def hook(self, request: Request) -> JSONResponse:
        key = request.headers.get("Idempotency-Key", "")
        await request.body()
        while not self.answering.is_set():
            await asyncio.sleep(0.01)
        with self.lock:
            self.receipts[key] += 1
            if key not in self.effects:
                self.effects[key] += 1
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


def write_config(folder: Path, database_url: str, webhook_url: str) -> Path:
    config = folder / "gateway.toml"
    config.write_text(
        f"""
[database]
url = {json.dumps(database_url)}
[portal]
webhook_url = {json.dumps(webhook_url)}
timeout_seconds = 5
[registry]
allow_private_endpoints = true
[outbox]
lease_seconds = 3
breaker_failures = 1000
backoff_initial_seconds = 0.2
backoff_max_seconds = 1
jitter_seconds = 0.1
concurrency_per_agency = 60
attempts = 50
""",
        encoding="utf-8",
    )
    return config


def start_worker(config: Path, folder: Path, number: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    log = (folder / f"worker-{number}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "worker", "--config", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def enqueue_backlog(db: Database) -> None:
    with db.unit_of_work() as session:
        for dossier in range(DOSSIERS):
            code = f"000.00.23.H38-261203-{dossier:04d}"
            for notice in range(NOTICES):
                outbox.enqueue(
                    session,
                    kind=messages.PORTAL_WEBHOOK,
                    target=messages.PORTAL_TARGET,
                    payload={"dossier_code": code, "event": {"status": "received", "at": "2026-12-03T08:00:00Z"}},
                    idempotency_key=outbox.message_key(code, f"webhook:{notice}"),
                    ordering_key=code,
                )


def claims_of(db: Database, pid: int, *states: str) -> int:
    """How many messages in ``states`` the worker process ``pid`` claimed (its id is ``host-pid-suffix``; a
    delivered message keeps the id of the worker that completed it)."""
    with db.unit_of_work() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.state.in_(states), OutboxMessage.claimed_by.like(f"%-{pid}-%"))
            )
            or 0
        )


def victim_of(db: Database, running: list[subprocess.Popen[bytes]], after: int) -> int | None:
    """The next worker after ``after`` that holds claims now (it is killed mid-work) while another one has
    delivered (it is up): one worker may be down, restarting, without the others stopping."""
    for step in range(1, len(running) + 1):
        candidate = (after + step) % len(running)
        if not claims_of(db, running[candidate].pid, outbox.IN_FLIGHT):
            continue
        others = [process for n, process in enumerate(running) if n != candidate]
        if any(claims_of(db, process.pid, outbox.IN_FLIGHT, outbox.DONE) for process in others):
            return candidate
    return None


def wait_for_victim(db: Database, running: list[subprocess.Popen[bytes]], after: int) -> int:
    """:func:`victim_of`, waited for (with a bound) while the receiver holds its answers."""
    deadline = time.monotonic() + 60
    while (victim := victim_of(db, running, after)) is None:
        assert time.monotonic() < deadline, "no worker held claims while another was up"
        time.sleep(0.05)
    return victim


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_three_workers_deliver_a_backlog_once_each_while_one_is_killed_every_few_seconds(
    tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    receiver = Receiver()
    with private_cluster() as cluster, ServerThread(receiver.app()) as portal:
        db = Database.connect(cluster.url)
        try:
            db.upgrade()
            enqueue_backlog(db)
            config = write_config(tmp_path, cluster.url, f"{portal.base_url}/hook")
            running = [start_worker(config, tmp_path, n) for n in range(WORKERS)]
            workers.extend(running)

            def counts() -> dict[str, int]:
                with db.unit_of_work() as session:
                    return outbox.stats(session)

            began = time.monotonic()
            deadline = began + 180
            kills, last, held = 0, WORKERS - 1, 0
            while (done := counts()["done"]) < TOTAL:
                assert time.monotonic() < deadline, f"backlog not drained: {counts()}, {kills} kills"
                # At each fifth of the backlog a worker is killed mid-work (every few seconds), then started again:
                # the receiver holds its answers meanwhile, so a worker is surely holding claims when it dies.
                if kills < KILLS_AT - 1 and done >= (kills + 1) * TOTAL // KILLS_AT:
                    receiver.answering.clear()
                    try:
                        victim = wait_for_victim(db, running, last)
                        held += claims_of(db, running[victim].pid, outbox.IN_FLIGHT)
                        os.kill(running[victim].pid, signal.SIGKILL)
                        running[victim].wait(timeout=30)
                    finally:
                        receiver.answering.set()
                    running[victim] = start_worker(config, tmp_path, victim)
                    workers.append(running[victim])
                    kills, last = kills + 1, victim
                time.sleep(0.05)
            drained = time.monotonic() - began
            for process in running:
                process.send_signal(signal.SIGTERM)
            # A clean stop (a worker restarted moments ago may still be starting: SIGTERM ends it before it claims).
            assert {process.wait(timeout=30) for process in running} <= {0, -signal.SIGTERM}

            with db.unit_of_work() as session:
                final = outbox.stats(session)
                stuck = session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(OutboxMessage.lease_until.is_not(None))
                )
                attempts = session.scalar(select(func.sum(OutboxMessage.attempts)))
        finally:
            db.dispose()

    assert kills == KILLS_AT - 1
    assert final == {"pending": 0, "in_flight": 0, "done": TOTAL, "dead": 0}
    assert stuck == 0  # no claim left holding a lease
    assert len(receiver.effects) == TOTAL
    assert set(receiver.effects.values()) == {1}  # each key's effect applied once
    assert set(receiver.receipts) == set(receiver.effects)
    repeats = sum(receiver.receipts.values()) - TOTAL
    print(
        f"\nscale-out: {TOTAL} messages, {WORKERS} workers, {kills} SIGKILLs holding {held} claims, drained in "
        f"{drained:.1f} s, {repeats} repeated deliveries (absorbed by the key), {attempts} attempts recorded"
    )
