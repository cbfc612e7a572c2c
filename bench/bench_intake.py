"""Intake throughput through the real HTTP API over loopback, beside the floor measured in the same run.

The gateway's API (:func:`gateway.api.app.create_app`) runs in a child process under uvicorn. The same server also
answers ``/_bench/…`` from a bare Starlette app (no gateway code in the way), the floor:

- ``POST /_bench/floor`` reads the body and answers 201 with a small JSON: what any endpoint on this server costs;
- ``POST /_bench/floor-pdf`` does the same, then decodes the body's PDF and validates its signature with pyHanko
  directly (one prebuilt validation context with the same trust anchors and CRLs, revocation required).

With 8 concurrent clients and the same request bodies it posts:

- a dossier without attachment (``POST /api/v1/dossiers``: validation, code, deadlines, history, outbox message,
  idempotency record and audit entry in one transaction), against ``/_bench/floor``;
- a dossier with a 1 MB signed PDF (the same, plus decoding, content sniffing, signature validation with revocation
  from CRLs, and storing the file), against ``/_bench/floor-pdf``;

and prints each rate and the ratio: the gateway's rate over the floor's (1.00 = as fast as the floor). The gateway and
its floor are measured in alternating rounds, so that a change of the machine's load during the run weighs on both;
the server's CPU time per request (its signature validation workers included) is printed too, a figure that other
load on the machine disturbs less than rates do.

``--postgres URL`` runs the gateway on a fresh database of that PostgreSQL server (created and dropped by the
benchmark) instead of a SQLite file. ``--profile FILE`` runs the server under pyinstrument and writes its report (the
database work is run inline on the event loop's thread so that one profile sees all of it) plus the number of
transactions and SQL statements per dossier.

Run: ``.venv/bin/python bench/bench_intake.py [--quick] [--postgres URL] [--only small|pdf] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.support import child_env, cpu_seconds  # noqa: E402

AGENCY = "000.00.23.H38"
PORTAL_TOKEN = "bench-portal-token-0123456789"
CONCURRENCY = 8
CATALOGUE = [
    {
        "code": "BENCH.1",
        "name": "Thủ tục đo hiệu năng",
        "agencies": [AGENCY],
        "processing_days": 15,
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": False, "must_be_signed": False}],
        "fees": [],
    }
]
FLOOR_ANSWER = {"code": "000.00.23.H38-261123-0001", "status": "submitted"}


# ----------------------------------------------------------------------------------------------------------------------
# The server (child process)


def floor_app(signing: Any) -> Any:
    """The bare Starlette floor: the body read; for ``floor-pdf`` also the PDF validated with pyHanko directly."""
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    context = ValidationContext(
        trust_roots=[load_cert_from_pemder(str(p)) for p in signing.trust_anchors],
        other_certs=[load_cert_from_pemder(str(p)) for p in signing.intermediates],
        crls=[Path(p).read_bytes() for p in signing.crls],
        revocation_mode="require",
    )

    async def floor(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(FLOOR_ANSWER, status_code=201)

    async def floor_pdf(request: Request) -> JSONResponse:
        document = json.loads(await request.body())
        data = base64.b64decode(document["components"][0]["content_base64"])
        signature = PdfFileReader(BytesIO(data)).embedded_signatures[0]
        status = await async_validate_pdf_signature(signature, context)
        if not status.bottom_line:
            return JSONResponse({"error": "invalid"}, status_code=422)
        return JSONResponse(FLOOR_ANSWER, status_code=201)

    routes = [Route("/_bench/floor", floor, methods=["POST"]), Route("/_bench/floor-pdf", floor_pdf, methods=["POST"])]
    return Starlette(routes=routes)


def dispatch(gateway: Any, floor: Any) -> Any:
    """One ASGI app: ``/_bench/…`` to the floor, everything else (lifespan included) to the gateway."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/_bench/"):
            await floor(scope, receive, send)
        else:
            await gateway(scope, receive, send)

    return app


def count_statements(engine: Any, counts: Counter[str]) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counts["statements"] += 1
        counts[sql.split(None, 1)[0].upper()] += 1

    @event.listens_for(engine, "commit")
    def commit(_conn: Any) -> None:
        counts["commits"] += 1


def run_inline() -> None:
    """Run ``anyio.to_thread.run_sync`` work on the calling thread (profiling: one thread holds all the work)."""
    import anyio.to_thread

    async def inline(func: Any, *args: Any, **_kwargs: Any) -> Any:
        return func(*args)

    anyio.to_thread.run_sync = inline  # type: ignore[assignment]


def serve(config_path: str, profile: str | None) -> None:
    """Run the API and the floor on a free port until SIGTERM; print its URL."""
    from gateway.api.app import create_app
    from gateway.daemon import listen_socket, serve_asgi, settle_after_start
    from gateway.logging import setup_logging
    from gateway.runtime import Runtime
    from gateway.serving import run_loop
    from gateway.settings import load_settings
    from gateway.store.database import Database

    setup_logging("ERROR")
    settings = load_settings(config_path)
    runtime = Runtime(settings=settings, db=Database.connect(settings.database.url))
    app = dispatch(create_app(runtime), floor_app(settings.signing))
    counts: Counter[str] = Counter()
    profiler = None
    if profile:
        from pyinstrument import Profiler

        count_statements(runtime.db.engine, counts)
        run_inline()
        profiler = Profiler(interval=0.0005, async_mode="disabled")
    sock = listen_socket("127.0.0.1", 0)

    def ready(url: str) -> None:
        settle_after_start()  # as ``dvc-gateway serve`` does
        print(url, flush=True)

    async def main() -> None:
        await serve_asgi(app, sock, stop=asyncio.Event(), on_ready=ready, handle_signals=True)

    try:
        if profiler is not None:
            profiler.start()
        run_loop(main(), event_loop=settings.server.event_loop)  # as ``dvc-gateway serve`` runs, floor included
    finally:
        if profiler is not None and profile:
            profiler.stop()
            text = profiler.output_text(unicode=True, color=False, show_all=False)
            Path(profile).write_text(f"{dict(counts)}\n\n{text}", encoding="utf-8")
        runtime.close()


# ----------------------------------------------------------------------------------------------------------------------
# Setup (parent)


def prepare(work: Path, database_url: str) -> tuple[Path, bytes]:
    """The configuration, database and trust material; a 1 MB signed PDF."""
    from gateway.catalogue import import_procedures, parse_catalogue
    from gateway.registry import Registration, register
    from gateway.store.database import Database
    from tests.documents import make_pdf, sign_pdf
    from tests.pki import build_pki

    pki = build_pki(work / "pki")
    pdf = sign_pdf(make_pdf("Don de nghi", padding=1024 * 1024), pki.good)
    config = work / "gateway.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = 8080
[database]
url = {json.dumps(database_url)}
[registry]
allow_private_endpoints = true
[signing]
trust_anchors = [{json.dumps(str(pki.root.cert_path))}]
intermediates = [{json.dumps(str(pki.ca.cert_path))}]
crls = {json.dumps([str(p) for p in pki.crl_paths])}
[[auth.tokens]]
token = "{PORTAL_TOKEN}"
role = "portal"
""",
        encoding="utf-8",
    )
    db = Database.connect(database_url)
    db.upgrade()
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(json.dumps(CATALOGUE)))
        register(
            session,
            Registration.model_validate(
                {
                    "code": AGENCY,
                    "name": "Sở Xây dựng",
                    "protocol": "rest",
                    "endpoint": "http://127.0.0.1:9/api",
                    "procedures": ["BENCH.1"],
                }
            ),
        )
    db.dispose()
    return config, pdf


def postgres_database(server_url: str, name: str, *, drop: bool) -> str:
    """Create (or with ``drop`` remove) the database ``name`` on ``server_url``'s server; its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def body(pdf: bytes | None) -> bytes:
    document: dict[str, Any] = {
        "procedure_code": "BENCH.1",
        "agency_code": AGENCY,
        "applicant": {"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        "summary": "Hồ sơ đo hiệu năng",
        "components": [],
    }
    if pdf is not None:
        document["components"] = [
            {"code": "TP1", "filename": "don.pdf", "content_base64": base64.b64encode(pdf).decode("ascii")}
        ]
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


async def timed(url: str, path: str, content: bytes, *, requests: int, tag: str) -> float:
    """Seconds taken by ``requests`` POSTs of ``content`` to ``path``, :data:`CONCURRENCY` at a time."""
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, trust_env=False) as client:
        counter = iter(range(10**9))

        async def one() -> None:
            key = f"{tag}-{next(counter)}"
            response = await client.post(path, content=content, headers={**headers, "Idempotency-Key": key})
            if response.status_code != 201:
                raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")

        async def worker(count: int) -> None:
            for _ in range(count):
                await one()

        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))  # warm up: connections, caches
        shares = [requests // CONCURRENCY + (1 if i < requests % CONCURRENCY else 0) for i in range(CONCURRENCY)]
        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in shares))
        return time.perf_counter() - start


def rates(
    url: str, floor_path: str, content: bytes, *, requests: int, rounds: int, tag: str, server: int
) -> tuple[float, float, float, float]:
    """The gateway's and the floor's requests per second, measured in alternating rounds (a machine whose load
    changes during the run weighs on both alike), and the server's CPU seconds per request for each."""
    per_round = max(CONCURRENCY, requests // rounds)
    seconds = {"gateway": 0.0, "floor": 0.0}
    cpu = {"gateway": 0.0, "floor": 0.0}
    for index in range(rounds):
        for which, path in (("floor", floor_path), ("gateway", "/api/v1/dossiers")):
            before = cpu_seconds(server)
            seconds[which] += asyncio.run(timed(url, path, content, requests=per_round, tag=f"{which}{tag}{index}"))
            cpu[which] += cpu_seconds(server) - before
    total = per_round * rounds
    return total / seconds["gateway"], total / seconds["floor"], cpu["gateway"] / total, cpu["floor"] / total


def measure(url: str, pdf: bytes, *, small_n: int, pdf_n: int, label: str, only: str | None, server: int) -> None:
    small, with_pdf = body(None), body(pdf)
    print(f"intake through the real API on {url} ({CONCURRENCY} concurrent clients, {label})")
    print(f"{'case':<34}{'gateway/s':>11}{'floor':>16}{'floor/s':>9}{'ratio':>7}{'CPU ms g/f':>14}{'ratio':>7}")
    cases = (
        ("dossier, no attachment", small, small_n, "/_bench/floor", "bare endpoint"),
        (f"dossier, signed PDF of {len(pdf) / 1e6:.1f} MB", with_pdf, pdf_n, "/_bench/floor-pdf", "bare + pyHanko"),
    )
    for index, (case, content, n, floor_path, floor_label) in enumerate(cases):
        if only is not None and only != ("small", "pdf")[index]:
            continue
        gateway, floor, gateway_cpu, floor_cpu = rates(
            url, floor_path, content, requests=n, rounds=4, tag=str(index), server=server
        )
        cpu = f"{gateway_cpu * 1000:.1f}/{floor_cpu * 1000:.1f}"
        print(
            f"{case:<34}{gateway:>11.1f}{floor_label:>16}{floor:>9.1f}{gateway / floor:>7.2f}"
            f"{cpu:>14}{floor_cpu / gateway_cpu:>7.2f}"
        )
    print("ratio = the gateway's rate / the floor's (1.00 = as fast as the floor); CPU ms g/f: the server's CPU time")
    print("(its worker processes included) per request, gateway / floor, and the floor's over the gateway's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server to run on (a fresh database on it)")
    parser.add_argument("--profile", metavar="FILE", help="profile the server with pyinstrument into FILE")
    parser.add_argument("--only", choices=("small", "pdf"), help="only the dossier without attachment, or with the PDF")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.profile)
        return

    small_n, pdf_n = (80, 16) if args.quick else (400, 80)
    name = f"bench_intake_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work = Path(tmp)
        if args.postgres:
            database_url, label = postgres_database(args.postgres, name, drop=False), "PostgreSQL"
        else:
            database_url, label = f"sqlite:///{work / 'gateway.db'}", "SQLite WAL"
        config, pdf = prepare(work, database_url)
        env = child_env()
        command = [sys.executable, __file__, "--serve", str(config)]
        if args.profile:
            command += ["--profile", str(Path(args.profile).absolute())]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://"):
                raise SystemExit("the server did not start")
            measure(url, pdf, small_n=small_n, pdf_n=pdf_n, label=label, only=args.only, server=server.pid)
        finally:
            server.terminate()
            server.wait(timeout=120)
            if args.postgres:
                postgres_database(args.postgres, name, drop=True)


if __name__ == "__main__":
    main()
