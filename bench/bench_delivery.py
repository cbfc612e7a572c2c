"""Delivery throughput through the outbox, beside the floor of posting directly to the same agency.

The agency simulator (``dvc-gateway simulate agency``, the reference REST contract with idempotency keys) runs in a
child process. The gateway side runs here on a SQLite database (WAL) holding N submitted dossiers, each with its
``agency.deliver`` message:

- *gateway*: an :class:`~gateway.workers.OutboxWorker` with the :class:`~gateway.bootstrap.Composition` claims
  the messages, reads each dossier and the agency's registration, builds the agency's document (files in base64),
  delivers it through the REST adapter (bearer token, idempotency key, SSRF guard, size cap) and records the outcome;
- *floor*: ``httpx.AsyncClient`` posting the same documents to the same simulator with the same concurrency and the
  same idempotency keys, nothing else.

Each side delivers its first 16 messages untimed (connections, caches, the first statements compiled, the gateway's
agency client built), then the N others timed. The floor runs before the gateway and again after it. It prints
messages per second for each and the ratio: the gateway's rate over the floor's, both floor runs taken together
(1.00 = as fast as the floor; the target is 0.6), so that a machine whose speed changes during the run weighs on
both sides alike. The gateway's clients go out on
aiohttp's connections (``adapters.connections``), whose HTTP/1.1 costs less than httpx's own: for reference, the
same documents posted with aiohttp alone are measured last, and the gateway's share of that rate printed too. The
simulator is reset between runs. ``--profile FILE`` writes a pyinstrument report of the gateway's run (the event
loop's thread) to FILE.

Run: ``.venv/bin/python bench/bench_delivery.py [--quick] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.support import (  # noqa: E402
    WARMUP,
    Cpu,
    after_warmup,
    both_runs,
    delivered,
    floor_phase,
    outbox_rate,
    profiled,
    rate_table,
    reset_simulator,
    start_simulator,
)
from gateway import outbox  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.catalogue import import_procedures, parse_catalogue  # noqa: E402
from gateway.daemon import settle_after_start  # noqa: E402
from gateway.logging import setup_logging  # noqa: E402
from gateway.registry import Registration, register  # noqa: E402
from gateway.runtime import Runtime  # noqa: E402
from gateway.serving import run_loop  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.database import Database  # noqa: E402
from gateway.store.models import Dossier, utcnow  # noqa: E402
from tests.core_support import submit  # noqa: E402
from tests.documents import make_pdf  # noqa: E402

AGENCY = "000.00.23.H38"
TOKEN = "bench-agency-token-0123456789"
CONCURRENCY = 8
CATALOGUE = [
    {
        "code": "BENCH.1",
        "name": "Thủ tục đo hiệu năng",
        "agencies": [AGENCY],
        "processing_days": 15,
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False}],
        "fees": [],
    }
]


async def prepare(work: Path, sim_url: str, count: int) -> Runtime:
    """A runtime on a fresh database with ``count`` submitted dossiers (each with a small PDF) awaiting delivery."""
    token_file = work / "token"
    token_file.write_text(TOKEN, encoding="utf-8")
    db = Database.connect(f"sqlite:///{work / 'gateway.db'}")
    db.upgrade()
    settings = Settings.from_raw({"registry": {"allow_private_endpoints": True}}, work)
    runtime = Runtime(settings=settings, db=db)
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(json.dumps(CATALOGUE)))
        document = {
            "code": AGENCY,
            "name": "Sở Xây dựng",
            "protocol": "rest",
            "endpoint": sim_url,
            "procedures": ["BENCH.1"],
            "auth": {"type": "bearer", "token": f"file:{token_file}"},
        }
        register(session, Registration.model_validate(document))
    pdf = base64.b64encode(make_pdf("Don de nghi", padding=20_000)).decode("ascii")
    submission = {
        "procedure_code": "BENCH.1",
        "agency_code": AGENCY,
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        "components": [{"code": "TP1", "filename": "don.pdf", "content_base64": pdf}],
    }
    for _ in range(count):
        answer = await submit(runtime, Principal("portal"), submission, idempotency_key=None, now=utcnow())
        assert answer.status == 201
    return runtime


async def documents(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    """(idempotency key, agency document) of every pending delivery: what the floor posts."""
    from sqlalchemy import select

    from gateway.views import agency_document

    def read(session: Any) -> list[tuple[str, dict[str, Any]]]:
        pairs = []
        for message in outbox.list_messages(session, outbox.PENDING, limit=10**6):
            dossier = session.scalars(select(Dossier).where(Dossier.code == message.ordering_key)).one()
            pairs.append((message.idempotency_key, agency_document(session, dossier, agency_code=AGENCY)))
        return pairs

    return await runtime.db.run(read)


async def floor_rate(sim_url: str, pairs: list[tuple[str, dict[str, Any]]]) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    bodies = [(key, json.dumps(doc, ensure_ascii=False).encode("utf-8")) for key, doc in pairs]
    async with httpx.AsyncClient(base_url=sim_url, timeout=60, limits=limits, trust_env=False) as client:

        async def worker(items: Iterator[tuple[str, bytes]]) -> None:
            for key, content in items:
                response = await client.post("/dossiers", content=content, headers={**headers, "Idempotency-Key": key})
                if response.status_code != 201:
                    raise RuntimeError(f"floor: HTTP {response.status_code}")

        return await after_warmup(bodies, worker, CONCURRENCY)


async def aiohttp_rate(sim_url: str, pairs: list[tuple[str, dict[str, Any]]]) -> float:
    """The reference: aiohttp alone (the connections the gateway's clients go out on) posting the same documents."""
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    bodies = [(key, json.dumps(doc, ensure_ascii=False).encode("utf-8")) for key, doc in pairs]
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(sim_url, connector=connector) as session:

        async def worker(items: Iterator[tuple[str, bytes]]) -> None:
            for key, content in items:
                async with session.post("/dossiers", data=content, headers={**headers, "Idempotency-Key": key}) as r:
                    await r.read()
                    if r.status != 201:
                        raise RuntimeError(f"reference: HTTP {r.status}")

        return await after_warmup(bodies, worker, CONCURRENCY)


async def run(work: Path, sim_url: str, count: int, cpu: Cpu, profile: str | None = None) -> None:
    total = count + WARMUP
    runtime = await prepare(work, sim_url, total)
    settle_after_start()  # as ``dvc-gateway worker`` does once running
    try:
        pairs = await documents(runtime)
        size = len(json.dumps(pairs[0][1]).encode())
        print(f"delivery of {count} dossiers (~{size / 1000:.0f} kB each) to the agency simulator at {sim_url}")
        print(f"({CONCURRENCY} concurrent deliveries; gateway: outbox on SQLite WAL + worker + REST adapter)")
        floor_run = functools.partial(floor_rate, sim_url, pairs)
        before = await floor_phase(sim_url, floor_run, total, cpu, "floor (httpx direct), before")
        await reset_simulator(sim_url)
        with profiled(profile), cpu.phase("gateway (outbox)"):
            gateway = await outbox_rate(runtime, total, CONCURRENCY)
        assert await delivered(sim_url) == total
        after = await floor_phase(sim_url, floor_run, total, cpu, "floor (httpx direct), after")
        reference_run = functools.partial(aiohttp_rate, sim_url, pairs)
        reference = await floor_phase(sim_url, reference_run, total, cpu, "aiohttp direct (reference)")
        floor = both_runs(before, after)
        rows = [
            ("gateway (outbox)", gateway),
            ("floor (httpx direct), before", before),
            ("floor (httpx direct), after", after),
            ("aiohttp direct (reference)", reference),
        ]
        print(rate_table("messages/s", rows))
        print(f"ratio {gateway / floor:.2f}x the floor (target >= 0.6x; 1.00 = as fast as posting directly)")
        print(f"(and {gateway / reference:.2f}x of aiohttp posting alone, the connections the gateway goes out on)")
        print(cpu.report(total))
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--profile", metavar="FILE", help="write a pyinstrument report of the gateway's run")
    args = parser.parse_args()
    setup_logging("ERROR")
    count = 100 if args.quick else 500
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        process, sim_url = start_simulator(Path(tmp), "--token", TOKEN)
        try:
            # Both sides on the event loop ``dvc-gateway worker`` runs on (``[server] event_loop``, uvloop by default).
            run_loop(run(Path(tmp), sim_url, count, Cpu(process.pid), args.profile))
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
