"""Scale-out proof on PostgreSQL: two worker processes drain one outbox without delivering a message twice.

A backlog of 1,000 messages (200 dossiers × 5 steps, over 10 agencies) is delivered by two ``OutboxWorker``
processes sharing one database. Each process records every delivery with its claim (worker id and attempt, the
outbox's fencing token) and its start and end times. The test asserts that every message was delivered exactly once,
under the claim that completed it, that both processes took part, and that each dossier's steps were delivered one
after the other in order. Skipped without ``DVC_GATEWAY_TEST_POSTGRES_URL``.

Run as a script (``python -m tests.test_outbox_pg_concurrency URL WORKER_ID OUT_DIR``) it is one worker process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import outbox
from gateway.store.database import Database
from gateway.workers import MessageView, OutboxWorker
from tests.databases import PG_ENV, PG_SKIP, postgres_schema_url

pytestmark = pytest.mark.skipif(not os.environ.get(PG_ENV), reason=PG_SKIP)

ROOT = Path(__file__).resolve().parent.parent
DOSSIERS, STEPS, AGENCIES = 200, 5, 10
TOTAL = DOSSIERS * STEPS


# ---------------------------------------------------------------------------------------------------------------------
# The worker process


class RecordingDispatcher:
    """Records ``message_id worker_id attempt start_ns end_ns`` for every delivery, one line each, flushed."""

    def __init__(self, worker_id: str, path: Path) -> None:
        self.worker_id = worker_id
        self.file = path.open("a", encoding="utf-8")

    async def dispatch(self, message: MessageView) -> None:
        start = time.monotonic_ns()
        await asyncio.sleep(random.uniform(0, 0.003))
        end = time.monotonic_ns()
        self.file.write(f"{message.id} {self.worker_id} {message.attempts} {start} {end}\n")
        self.file.flush()


async def _worker_main(url: str, worker_id: str, out_dir: Path) -> None:
    db = Database.connect(url)
    dispatcher = RecordingDispatcher(worker_id, out_dir / f"{worker_id}.log")
    worker = OutboxWorker(
        db,
        dispatcher,
        worker_id=worker_id,
        lease=timedelta(seconds=60),
        batch=20,
        concurrency_per_target=4,
        poll_interval=0.05,
    )
    stop = asyncio.Event()

    async def watch_stop_file() -> None:
        while not (out_dir / "stop").exists():
            await asyncio.sleep(0.05)
        stop.set()

    (out_dir / f"{worker_id}.ready").touch()
    watcher = asyncio.create_task(watch_stop_file())
    try:
        await worker.run(stop)
    finally:
        watcher.cancel()
        dispatcher.file.close()
        db.dispose()


# ---------------------------------------------------------------------------------------------------------------------
# The test


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_worker_processes_deliver_a_backlog_exactly_once_in_dossier_order(tmp_path: Path) -> None:
    with postgres_schema_url() as url:
        db = Database.connect(url)
        db.upgrade()
        workers = ("worker-1", "worker-2")
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.test_outbox_pg_concurrency", url, name, str(tmp_path)],
                cwd=ROOT,
            )
            for name in workers
        ]
        try:
            _wait_for(lambda: all((tmp_path / f"{n}.ready").exists() for n in workers), 30, "the workers to start")
            # The backlog lands at once, in one transaction, while both workers are polling.
            with db.unit_of_work() as session:
                for dossier in range(DOSSIERS):
                    code = f"000.00.{dossier % AGENCIES:02d}.H38-261122-{dossier:04d}"
                    for step in range(STEPS):
                        outbox.enqueue(
                            session,
                            kind="deliver",
                            target=f"agency-{dossier % AGENCIES}",
                            payload={"dossier": code, "step": step},
                            idempotency_key=outbox.message_key(code, f"step{step}"),
                            ordering_key=code,
                        )

            def all_done() -> bool:
                with db.unit_of_work() as session:
                    return outbox.stats(session)["done"] == TOTAL

            _wait_for(all_done, 45, "the backlog to be delivered")
        finally:
            (tmp_path / "stop").touch()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        assert [process.returncode for process in processes] == [0, 0]

        with db.unit_of_work() as session:
            assert outbox.stats(session) == {"pending": 0, "in_flight": 0, "done": TOTAL, "dead": 0}
            final = {m.id: m for m in outbox.list_messages(session, limit=TOTAL + 1)}
        db.dispose()

    deliveries = defaultdict(list)
    per_worker = dict.fromkeys(workers, 0)
    for name in workers:
        for line in (tmp_path / f"{name}.log").read_text().splitlines():
            message_id, worker_id, attempt, start, end = line.split()
            deliveries[int(message_id)].append((worker_id, int(attempt), int(start), int(end)))
            per_worker[worker_id] += 1

    # none left behind, none delivered twice (no lease expired: every message had exactly one claim)
    assert set(deliveries) == set(final)
    twice = {message_id: claims for message_id, claims in deliveries.items() if len(claims) != 1}
    assert twice == {}
    # each delivery was made under the claim that completed the message
    for message_id, [(worker_id, attempt, _start, _end)] in deliveries.items():
        assert (final[message_id].claimed_by, final[message_id].attempts) == (worker_id, attempt)
    # both processes took part
    assert all(count > 0 for count in per_worker.values()), per_worker
    # each dossier's steps were delivered one after the other, in order, across processes
    by_dossier = defaultdict(list)
    for message_id, message in final.items():
        by_dossier[message.ordering_key].append(message_id)
    for ids in by_dossier.values():
        ids.sort()
        spans = [deliveries[message_id][0][2:] for message_id in ids]
        for (_, previous_end), (next_start, _) in itertools.pairwise(spans):
            assert next_start >= previous_end


if __name__ == "__main__":
    asyncio.run(_worker_main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
