"""Scale-out on PostgreSQL: outbox throughput of 1, 2 and 4 worker processes over one backlog, and the ratios.

A backlog of N messages (spread over several agencies, independent of each other) sits in the outbox of a private
PostgreSQL schema (created under ``DVC_GATEWAY_TEST_POSTGRES_URL`` and dropped at the end). A simulated upstream in
its own process answers every POST after a fixed latency (``--latency``, 200 ms by default), so the workload is bound
by the upstream, as a real agency's is (with 50 ms, four processes of four deliveries each on two cores are bound by
the cores instead: the benchmark then measures the processor, not the scale-out). For 1, 2 and 4 worker processes
in turn, each process runs an :class:`~gateway.workers.OutboxWorker` (claims with ``FOR UPDATE SKIP LOCKED``, leases,
outcomes recorded with the fencing token) whose dispatcher posts the message to the upstream through one keep-alive
``httpx.AsyncClient``; the backlog is refilled before each run. It prints messages per second for each count, the
ideal (workers × in-flight deliveries per worker ÷ latency) and the scaling ratios (targets: 2 workers ≥ 1.7×,
4 workers ≥ 3× one worker).

Run: ``DVC_GATEWAY_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test
.venv/bin/python bench/bench_scale.py [--messages 400] [--latency 0.2] [--in-flight 4]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, func, insert, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from gateway import outbox  # noqa: E402
from gateway.logging import setup_logging  # noqa: E402
from gateway.outbox import RetryPolicy  # noqa: E402
from gateway.serving import run_loop  # noqa: E402
from gateway.store.database import Database  # noqa: E402
from gateway.store.models import OutboxMessage, utcnow  # noqa: E402
from gateway.workers import MessageView, OutboxWorker  # noqa: E402

PG_ENV = "DVC_GATEWAY_TEST_POSTGRES_URL"
TARGETS = 16
COUNTS = (1, 2, 4)


# ----------------------------------------------------------------------------------------------------------------------
# The simulated upstream (its own process): every POST answered 201 after the latency


def upstream_main(latency: float) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await asyncio.sleep(latency)
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", access_log=False, lifespan="off")
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"listening on http://127.0.0.1:{port}", flush=True)
        await task

    asyncio.run(serve())


# ----------------------------------------------------------------------------------------------------------------------
# One worker process


class PostDispatcher:
    """Posts each message's payload to the upstream with its idempotency key (one keep-alive pool per process)."""

    def __init__(self, upstream: str, in_flight: int) -> None:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        self.client = httpx.AsyncClient(base_url=upstream, limits=limits, timeout=30, trust_env=False)

    async def dispatch(self, message: MessageView) -> None:
        response = await self.client.post(
            f"/{message.target}", json=message.payload, headers={"Idempotency-Key": message.idempotency_key}
        )
        if response.status_code != 201:
            raise RuntimeError(f"upstream answered {response.status_code}")


async def worker_async(url: str, upstream: str, in_flight: int) -> None:
    db = Database.connect(url)
    dispatcher = PostDispatcher(upstream, in_flight)
    policy = RetryPolicy(concurrency_per_agency=in_flight, lease_seconds=60)
    worker = OutboxWorker(db, dispatcher, policy=policy, batch=in_flight, max_in_flight=in_flight, poll_interval=0.05)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    db.ping()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    try:
        await worker.run(stop)
    finally:
        await dispatcher.client.aclose()
        db.dispose()


def worker_main(url: str, upstream: str, in_flight: int) -> None:
    setup_logging("ERROR")
    run_loop(worker_async(url, upstream, in_flight))  # as ``dvc-gateway worker`` runs


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark


@contextmanager
def private_schema(base: str) -> Iterator[str]:
    """A URL to a fresh PostgreSQL schema (the connection's ``search_path``), dropped on exit."""
    schema = f"bench_scale_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def refill(db: Database, count: int) -> None:
    """An outbox holding ``count`` due, independent messages over :data:`TARGETS` agencies, nothing else."""
    now = utcnow()
    rows = [
        {
            "kind": "bench.post",
            "target": f"agency-{i % TARGETS:02d}",
            "ordering_key": None,
            "idempotency_key": f"bench-{uuid.uuid4().hex}",
            "payload": {"n": i, "note": "x" * 200},
            "state": outbox.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    with db.unit_of_work() as session:
        session.execute(text("DELETE FROM outbox"))
        session.execute(insert(OutboxMessage), rows)


def remaining(db: Database) -> int:
    """Messages not yet done or dead (an index-only count, cheap beside the workers' own queries)."""
    with db.unit_of_work() as session:
        query = select(func.count()).where(OutboxMessage.state.in_((outbox.PENDING, outbox.IN_FLIGHT)))
        return int(session.scalar(query) or 0)


def stats(db: Database) -> dict[str, int]:
    with db.unit_of_work() as session:
        return outbox.stats(session)


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def one_run(db: Database, url: str, upstream: str, workers: int, args: argparse.Namespace) -> float:
    refill(db, args.messages)
    processes = [spawn("--worker", url, upstream, str(args.in_flight)) for _ in range(workers)]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("a worker process did not start")
        start = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        while remaining(db):
            if any(process.poll() is not None for process in processes):
                raise SystemExit("a worker process stopped")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        counts = stats(db)
        if counts["dead"]:
            raise SystemExit(f"{counts['dead']} messages dead")
        return args.messages / elapsed
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="backlog size (default 400)")
    parser.add_argument("--latency", type=float, default=0.2, help="the upstream's latency per call (default 0.2 s)")
    parser.add_argument("--in-flight", type=int, default=4, help="deliveries in flight per worker process")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, metavar=("URL", "UPSTREAM", "IN_FLIGHT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        upstream_main(args.latency)
        return
    if args.worker:
        url, upstream, in_flight = args.worker
        worker_main(url, upstream, int(in_flight))
        return
    base = os.environ.get(PG_ENV)
    if not base:
        raise SystemExit(f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    setup_logging("ERROR")
    simulator = spawn("--upstream", "--latency", str(args.latency))
    try:
        assert simulator.stdout is not None
        line = simulator.stdout.readline()
        if "listening on " not in line:
            raise SystemExit("the upstream simulator did not start")
        upstream = line.rsplit(" ", 1)[-1].strip()
        with private_schema(base) as url:
            db = Database.connect(url)
            try:
                db.upgrade()
                run(db, url, upstream, args)
            finally:
                db.dispose()
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)


def run(db: Database, url: str, upstream: str, args: argparse.Namespace) -> None:
    print(
        f"outbox scale-out on PostgreSQL: {args.messages} messages over {TARGETS} agencies, upstream latency "
        f"{args.latency * 1000:.0f} ms, {args.in_flight} deliveries in flight per worker process"
    )
    rates = {n: one_run(db, url, upstream, n, args) for n in COUNTS}
    print(f"{'workers':<10}{'messages/s':>12}{'ideal':>10}{'vs 1 worker':>14}")
    for n, rate in rates.items():
        ideal = n * args.in_flight / args.latency
        print(f"{n:<10}{rate:>12.1f}{ideal:>10.0f}{rate / rates[1]:>13.2f}x")
    two, four = rates[2] / rates[1], rates[4] / rates[1]
    print(
        json.dumps(
            {"2_workers": round(two, 2), "4_workers": round(four, 2), "targets": {"2_workers": 1.7, "4_workers": 3.0}}
        )
    )
    print(f"scaling: 2 workers {two:.2f}x (target >= 1.7x), 4 workers {four:.2f}x (target >= 3x) one worker")


if __name__ == "__main__":
    main()
