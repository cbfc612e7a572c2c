"""Intake throughput through the real HTTP API over loopback, beside the framework's floor on the same server.

The gateway's API (:func:`gateway.api.app.create_app`, uvicorn, a SQLite database in WAL mode) runs in a child
process with one more route, ``POST /_bench/floor``: a bare FastAPI endpoint that reads the body and answers 201 with
a small JSON, what any endpoint of this framework on this server costs. The benchmark posts, with the same
concurrency and the same request bodies:

- a dossier without attachment (``POST /api/v1/dossiers``: validation, code, deadlines, history, outbox message,
  idempotency record and audit entry in one transaction);
- a dossier with a 1 MB signed PDF (the same, plus decoding, content sniffing, signature validation with revocation
  from CRLs, and storing the file);

and prints dossiers per second for each, the floor's requests per second, and the ratio: the gateway's time per
request over the floor's (1.0 = as fast as the floor).

Run: ``.venv/bin/python bench/bench_intake.py [--quick]``
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402

AGENCY = "000.00.23.H38"
PORTAL_TOKEN = "bench-portal-token-0123456789"
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


# ----------------------------------------------------------------------------------------------------------------------
# The server (child process)


def serve(config_path: str) -> None:
    """Run the API with the floor route on a free port until SIGTERM; print its URL."""
    from gateway.api.app import create_app
    from gateway.daemon import listen_socket, serve_asgi
    from gateway.logging import setup_logging
    from gateway.runtime import Runtime
    from gateway.settings import load_settings
    from gateway.store.database import Database

    setup_logging("ERROR")
    settings = load_settings(config_path)
    runtime = Runtime(settings=settings, db=Database.connect(settings.database.url))
    app = create_app(runtime)

    @app.post("/_bench/floor", status_code=201, include_in_schema=False)
    async def floor(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"code": "000.00.23.H38-261123-0001", "status": "submitted"}, status_code=201)

    sock = listen_socket("127.0.0.1", 0)

    def ready(url: str) -> None:
        print(url, flush=True)

    async def main() -> None:
        await serve_asgi(app, sock, stop=asyncio.Event(), on_ready=ready, handle_signals=True)

    try:
        asyncio.run(main())
    finally:
        runtime.close()


# ----------------------------------------------------------------------------------------------------------------------
# Setup (parent)


def prepare(work: Path) -> tuple[Path, bytes]:
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
url = "sqlite:///{work / "gateway.db"}"
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
    db = Database.connect(f"sqlite:///{work / 'gateway.db'}")
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


async def rate(url: str, path: str, content: bytes, *, requests: int, concurrency: int, status: int, tag: str) -> float:
    """Requests per second of ``requests`` POSTs of ``content`` to ``path``, ``concurrency`` at a time."""
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, trust_env=False) as client:
        counter = iter(range(10**9))

        async def one() -> None:
            key = f"{tag}-{next(counter)}"
            response = await client.post(path, content=content, headers={**headers, "Idempotency-Key": key})
            if response.status_code != status:
                raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")

        async def worker(count: int) -> None:
            for _ in range(count):
                await one()

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm up: connections, caches
        shares = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]
        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in shares))
        return requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    concurrency = 8
    small_n, pdf_n = (80, 16) if args.quick else (400, 80)
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        work = Path(tmp)
        config, pdf = prepare(work)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(config)], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://"):
                raise SystemExit("the server did not start")
            small, with_pdf = body(None), body(pdf)
            print(f"intake through the real API on {url} ({concurrency} concurrent requests, SQLite WAL)")
            print(f"{'case':<34}{'gateway/s':>12}{'floor/s':>12}{'ratio':>8}")
            cases = (
                ("dossier, no attachment", small, small_n),
                (f"dossier, signed PDF of {len(pdf) / 1e6:.1f} MB", with_pdf, pdf_n),
            )
            for index, (label, content, n) in enumerate(cases):
                floor = asyncio.run(
                    rate(
                        url, "/_bench/floor", content, requests=n, concurrency=concurrency, status=201, tag=f"f{index}"
                    )
                )
                gateway = asyncio.run(
                    rate(
                        url,
                        "/api/v1/dossiers",
                        content,
                        requests=n,
                        concurrency=concurrency,
                        status=201,
                        tag=f"g{index}",
                    )
                )
                print(f"{label:<34}{gateway:>12.1f}{floor:>12.1f}{floor / gateway:>8.1f}")
            print("ratio = the gateway's time per request / the bare endpoint's (1.0 = as fast as the floor)")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
