"""Sustained load (not run in CI): a steady mix of intake, agency events and lookups against a running gateway.

The gateway (``dvc-gateway serve``: the API and the outbox worker in one process, SQLite WAL) and the REST agency
simulator each run in a child process; the gateway delivers every dossier to the simulator while the load runs. With
``--clients`` concurrent clients (8 by default, spread over four agencies so that a long run stays within each
agency's 9,999 dossier codes of a day), each client repeats: submit a dossier (``POST /api/v1/dossiers``),
report ``received`` then ``processing`` for a dossier submitted earlier (``POST /api/v1/agencies/{agency}/events``),
and look a dossier up twice (``GET /api/v1/lookup/{code}``). It runs for ``--duration`` seconds, or until
``--dossiers N`` dossiers were submitted, and prints requests per second, p50/p99 latency per kind, the error count,
and the gateway process's resident memory (RSS) at the start, after 1,000, 2,500, 5,000 and 10,000 dossiers and at
the end: after 10,000 dossiers it should
stay within 50 MB of the figure after 1,000.

Run: ``.venv/bin/python bench/bench_soak.py --duration 600`` or ``--dossiers 10000``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.support import child_env, start_simulator  # noqa: E402

#: Four agencies, so that a long run stays within each agency's 9,999 dossier codes of a day.
AGENCIES = ["000.00.23.H38", "000.00.24.H38", "000.00.25.H38", "000.00.26.H38"]
AGENCY_TOKENS = {agency: f"soak-agency-token-{index}-0123456789" for index, agency in enumerate(AGENCIES)}
PORTAL_TOKEN = "soak-portal-token-0123456789"
SIM_TOKEN = "soak-simulator-token-0123456789"
BASELINE_DOSSIERS = 1000
#: The dossier counts at which the gateway's memory is read.
MEMORY_SAMPLES = {BASELINE_DOSSIERS, 2500, 5000, 10000, 20000}
#: The run stops after this many failed submissions.
MAX_INTAKE_ERRORS = 100
CATALOGUE = [
    {
        "code": "SOAK.1",
        "name": "Thủ tục đo tải kéo dài",
        "agencies": AGENCIES,
        "processing_days": 15,
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": False, "must_be_signed": False}],
        "fees": [],
    }
]
SUBMISSION = {
    "procedure_code": "SOAK.1",
    "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
    "summary": "Cấp giấy phép xây dựng",
}


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare(work: Path, sim_url: str, port: int) -> Path:
    """The configuration and the database: the catalogue, the agency registered at the simulator."""
    from gateway.catalogue import import_procedures, parse_catalogue
    from gateway.registry import Registration, register
    from gateway.store.database import Database

    token_file = work / "agency-token"
    token_file.write_text(SIM_TOKEN, encoding="utf-8")
    database = work / "gateway.db"
    config = work / "gateway.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
[database]
url = "sqlite:///{database}"
[registry]
allow_private_endpoints = true
[[auth.tokens]]
token = "{PORTAL_TOKEN}"
role = "portal"
"""
        + "".join(f'[[auth.tokens]]\ntoken = "{AGENCY_TOKENS[a]}"\nrole = "agency:{a}"\n' for a in AGENCIES),
        encoding="utf-8",
    )
    db = Database.connect(f"sqlite:///{database}")
    db.upgrade()
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(json.dumps(CATALOGUE)))
        for agency in AGENCIES:
            document = {
                "code": agency,
                "name": f"Sở Xây dựng {agency}",
                "protocol": "rest",
                "endpoint": sim_url,
                "procedures": ["SOAK.1"],
                "auth": {"type": "bearer", "token": f"file:{token_file}"},
            }
            register(session, Registration.model_validate(document))
    db.dispose()
    return config


def start_gateway(work: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    env = child_env()
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    with (work / "gateway.log").open("wb") as log:  # the gateway's own log lines, kept out of the way
        process = subprocess.Popen(command, stdout=log, stderr=log, env=env, cwd=work)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the gateway did not start")


class Load:
    """The clients' shared state: latencies by kind, errors, submitted codes, memory samples."""

    def __init__(self, args: argparse.Namespace, pid: int) -> None:
        self.args = args
        self.pid = pid
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.codes: list[tuple[str, str]] = []  # (agency, dossier code)
        self.reported = 0
        self.rss: dict[str, int] = {"start": rss_bytes(pid)}
        self.started = time.perf_counter()

    def done(self) -> bool:
        if self.errors["intake"] >= MAX_INTAKE_ERRORS:  # e.g. the agency's 9,999 codes of the day are used up
            return True
        if self.args.dossiers:
            return len(self.codes) >= self.args.dossiers
        return time.perf_counter() - self.started >= self.args.duration

    async def call(self, kind: str, request: Any, ok: int) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = await request
        except httpx.HTTPError:
            self.errors[kind] += 1
            return None
        self.latencies[kind].append(time.perf_counter() - began)
        if response.status_code != ok:
            self.errors[kind] += 1
            return None
        return response

    def submitted(self, agency: str, code: str) -> None:
        self.codes.append((agency, code))
        if len(self.codes) in MEMORY_SAMPLES:
            self.rss[f"after {len(self.codes):,} dossiers"] = rss_bytes(self.pid)


async def client(load: Load, http: httpx.AsyncClient, number: int) -> None:
    portal = {"Authorization": f"Bearer {PORTAL_TOKEN}", "Content-Type": "application/json"}
    mine = AGENCIES[number % len(AGENCIES)]
    body = json.dumps({**SUBMISSION, "agency_code": mine}, ensure_ascii=False).encode("utf-8")
    while not load.done():
        response = await load.call("intake", http.post("/api/v1/dossiers", content=body, headers=portal), 201)
        if response is not None:
            load.submitted(mine, response.json()["code"])
        if load.reported < len(load.codes):
            agency, code = load.codes[load.reported]
            load.reported += 1
            headers = {"Authorization": f"Bearer {AGENCY_TOKENS[agency]}"}
            for status in ("received", "processing"):
                event = {"dossier_code": code, "status": status}
                request = http.post(f"/api/v1/agencies/{agency}/events", json=event, headers=headers)
                await load.call("event", request, 200)
        if load.codes:
            for index in (-1, len(load.codes) // 2):
                await load.call("lookup", http.get(f"/api/v1/lookup/{load.codes[index][1]}"), 200)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def soak(base_url: str, pid: int, args: argparse.Namespace) -> Load:
    load = Load(args, pid)
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits, trust_env=False) as http:
        await asyncio.gather(*(client(load, http, number) for number in range(args.clients)))
    load.rss["end"] = rss_bytes(pid)
    return load


def report(load: Load) -> None:
    elapsed = time.perf_counter() - load.started
    total = sum(len(v) for v in load.latencies.values())
    print(f"{len(load.codes)} dossiers in {elapsed:.0f} s; {total / elapsed:.1f} requests/s")
    print(f"{'kind':<10}{'requests':>10}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for kind in ("intake", "event", "lookup"):
        values = load.latencies.get(kind, [])
        p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
        print(f"{kind:<10}{len(values):>10}{len(values) / elapsed:>9.1f}{p50:>9.1f}{p99:>9.1f}{load.errors[kind]:>8}")
    print(f"errors: {sum(load.errors.values())}")
    for label, value in load.rss.items():
        print(f"gateway RSS {label}: {value / 2**20:.1f} MB")
    baseline = load.rss.get(f"after {BASELINE_DOSSIERS:,} dossiers")
    if baseline is not None:
        growth = (load.rss["end"] - baseline) / 2**20
        print(f"memory growth since {BASELINE_DOSSIERS:,} dossiers: {growth:+.1f} MB (limit +50 MB at 10,000 dossiers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--dossiers", type=int, help="submit this many dossiers instead of running for a duration")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        work = Path(tmp)
        simulator, sim_url = start_simulator(work, "--token", SIM_TOKEN)
        try:
            port = free_port()
            config = prepare(work, sim_url, port)
            gateway = start_gateway(work, config, port)
            try:
                load = asyncio.run(soak(f"http://127.0.0.1:{port}", gateway.pid, args))
            finally:
                gateway.terminate()
                gateway.wait(timeout=60)
            report(load)
        finally:
            simulator.terminate()
            simulator.wait(timeout=60)


if __name__ == "__main__":
    main()
