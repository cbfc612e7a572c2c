"""The daemon: ``serve`` survives ``kill -9`` in the middle of a burst without losing an accepted dossier or a delivery,
stops cleanly on SIGTERM; ``worker`` delivers on its own; the API wakes the worker; logs are JSON without personal
data.

The daemon and the agency simulator run as real processes (``python -m gateway serve|worker|simulate``) on 127.0.0.1
with a SQLite database in a temporary directory. Every wait has a limit; no test asserts a timing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from gateway import outbox
from gateway.auth import Principal
from gateway.catalogue import import_procedures, load_catalogue
from gateway.cli import main
from gateway.daemon import listen_socket, run_daemon, serve_asgi
from gateway.registry import Registration, register
from gateway.runtime import Runtime
from gateway.settings import load_settings
from gateway.simulators.agency import create_app as create_simulator
from gateway.store.database import Database
from gateway.store.models import Dossier, utcnow
from tests.core_support import submit
from tests.databases import BACKENDS, postgres_schema_url
from tests.documents import make_pdf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
PORTAL_TOKEN = "portal-token-for-the-crash-test"
ADMIN_TOKEN = "admin-token-for-the-crash-test"
OUTBOUND_TOKEN = "agency-outbound-token-0123456789"
APPLICANT_NAME = "Nguyễn Thị Bí Mật"
APPLICANT_ID = "079123456789"
CODE_RE = re.compile(r"^000\.00\.23\.H38-\d{6}-\d{4}$")
TOKENS = f"""
[[auth.tokens]]
token = "{PORTAL_TOKEN}"
role = "portal"
[[auth.tokens]]
token = "{ADMIN_TOKEN}"
role = "admin"
"""


# ----------------------------------------------------------------------------------------------------------------------
# Processes


class Process:
    """A ``python -m gateway …`` subprocess whose stdout lines are read in the background."""

    def __init__(self, args: list[str], cwd: Path, stderr_path: Path, env: dict[str, str] | None = None) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("ab")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}, **(env or {})}
        env["PYTHONUNBUFFERED"] = "1"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.popen.poll() is not None:
                    raise AssertionError(
                        f"the process exited ({self.popen.returncode}): {self.stderr_tail()}"
                    ) from None
                continue
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {self.stderr_tail()}")

    def stderr_tail(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:  # whatever a failed test left running
        process.kill()


def free_port() -> int:
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    return port


def start_simulator(tmp_path: Path, processes: list[Process]) -> str:
    sim = Process(
        ["simulate", "agency", "--port", "0", "--token", OUTBOUND_TOKEN], tmp_path, tmp_path / "simulator.log"
    )
    processes.append(sim)
    return sim.wait_for_line(r"listening on (http://127\.0\.0\.1:\d+)").group(1)


def write_config(tmp_path: Path, port: int, database_url: str | None = None, *, tokens: bool = True) -> Path:
    trust = EXAMPLES / "trust"
    database_url = database_url or f"sqlite:///{tmp_path / 'gateway.db'}"
    (tmp_path / "outbound-token").write_text(OUTBOUND_TOKEN, encoding="utf-8")
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
[database]
url = {json.dumps(database_url)}
[registry]
allow_private_endpoints = true
[signing]
trust_anchors = [{json.dumps(str(trust / "root.pem"))}]
intermediates = [{json.dumps(str(trust / "ca.pem"))}]
crls = [{json.dumps(str(trust / "crls"))}]
[outbox]
lease_seconds = 2
backoff_initial_seconds = 0.1
backoff_max_seconds = 1
jitter_seconds = 0.1
"""
        + (TOKENS if tokens else ""),
        encoding="utf-8",
    )
    return config


def prepare_database(config_path: Path, sim_url: str) -> None:
    """The catalogue imported and the simulated agency registered (as the CLI would do)."""
    db = Database.connect(load_settings(config_path, environ={}).database.url)
    db.upgrade()
    try:
        with db.unit_of_work() as session:
            import_procedures(session, load_catalogue(EXAMPLES / "procedures.json"))
            document = {
                "code": AGENCY,
                "name": "Sở Xây dựng",
                "protocol": "rest",
                "endpoint": sim_url,
                "procedures": [PROCEDURE],
                "auth": {"type": "bearer", "token": f"file:{config_path.parent / 'outbound-token'}"},
            }
            register(session, Registration.model_validate(document))
    finally:
        db.dispose()


@functools.cache
def _pdf(index: int) -> str:
    """Dossier ``index``'s PDF in base64, made once: pyHanko writes the time into a PDF (``/ModDate``), and a retry must
    send the very body of the first attempt, or its ``Idempotency-Key`` is refused as reused for another request."""
    return base64.b64encode(make_pdf(f"Don so {index}")).decode("ascii")


def submission(index: int) -> dict[str, Any]:
    pdf = _pdf(index)
    return {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "applicant": {"full_name": APPLICANT_NAME, "id_number": APPLICANT_ID, "phone": "0912345678"},
        "summary": f"Hồ sơ số {index}",
        "components": [
            {"code": code, "filename": f"{code}.pdf", "content_base64": pdf} for code in ("TP1", "TP2", "TP3")
        ],
        "fees": [{"code": "LP1", "amount": 150000}],
    }


def database_state(config_path: Path) -> tuple[set[str], dict[str, int]]:
    """The dossier codes in the database and the outbox's counts by state."""
    db = Database.connect(load_settings(config_path, environ={}).database.url)
    try:
        with db.unit_of_work() as session:
            from sqlalchemy import select

            codes = set(session.scalars(select(Dossier.code)))
            return codes, outbox.stats(session)
    finally:
        db.dispose()


def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def assert_no_personal_data(*logs: str) -> None:
    for text in logs:
        assert APPLICANT_NAME not in text
        assert APPLICANT_ID not in text
        assert "0912345678" not in text


def assert_json_lines(text: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= entry.keys()


# ----------------------------------------------------------------------------------------------------------------------
# The crash test


async def _burst(
    url: str, indexes: list[int], *, concurrency: int, on_answer: Callable[[int], None] | None = None
) -> tuple[dict[int, str], dict[int, str]]:
    """Submit dossiers concurrently: (index → code answered 201, index → failure)."""
    answered: dict[int, str] = {}
    failed: dict[int, str] = {}
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, trust_env=False) as client:

        async def one(index: int) -> None:
            async with semaphore:
                try:
                    response = await client.post(
                        "/api/v1/dossiers",
                        json=submission(index),
                        headers={**headers, "Idempotency-Key": f"crash-test-{index}"},
                    )
                except httpx.HTTPError as exc:
                    failed[index] = type(exc).__name__
                    return
                if response.status_code == 201:
                    answered[index] = response.json()["code"]
                    if on_answer is not None:
                        on_answer(len(answered))
                else:
                    failed[index] = f"HTTP {response.status_code}"

        with anyio.fail_after(120):
            await asyncio.gather(*(one(i) for i in indexes))
    return answered, failed


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for the daemon: a SQLite file, or a fresh PostgreSQL schema (when configured)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return
    with postgres_schema_url() as url:
        yield url


def test_kill_9_mid_burst_loses_nothing_and_sigterm_stops_cleanly(
    tmp_path: Path, processes: list[Process], database_url: str
) -> None:
    sim_url = start_simulator(tmp_path, processes)
    # Slow answers: deliveries are in flight when the daemon dies.
    httpx.post(f"{sim_url}/_sim/faults", json={"delay_seconds": 0.05}, timeout=10).raise_for_status()
    config = write_config(tmp_path, free_port(), database_url)
    prepare_database(config, sim_url)

    daemon = Process(["serve", "--config", str(config)], tmp_path, tmp_path / "daemon-1.log")
    processes.append(daemon)
    url = daemon.wait_for_line(r"listening on (http://\S+)").group(1)

    total, kill_after = 60, 20
    killed = threading.Event()

    def on_answer(count: int) -> None:
        if count >= kill_after and not killed.is_set():
            killed.set()
            os.kill(daemon.popen.pid, signal.SIGKILL)

    answered, failed = asyncio.run(_burst(url, list(range(total)), concurrency=12, on_answer=on_answer))
    assert killed.is_set(), f"the daemon was not killed: {len(answered)} answered, failures {failed}"
    assert daemon.popen.wait(timeout=30) == -signal.SIGKILL
    assert len(answered) >= kill_after
    assert failed, "the kill came after the burst: nothing was interrupted"

    # Restart on the same database and port.
    restarted = Process(["serve", "--config", str(config)], tmp_path, tmp_path / "daemon-2.log")
    processes.append(restarted)
    url = restarted.wait_for_line(r"listening on (http://\S+)").group(1)
    headers = {"Authorization": f"Bearer {PORTAL_TOKEN}"}

    # Every dossier answered 201 survived the kill.
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for index, code in answered.items():
            response = client.get(f"/api/v1/dossiers/{code}", headers=headers)
            assert response.status_code == 200, (index, code, response.text)
            assert response.json()["code"] == code
            assert response.json()["applicant"]["full_name"] == APPLICANT_NAME

    # The portal retries what failed with the same keys: the ones committed before the kill get their first answer.
    retried, still_failed = asyncio.run(_burst(url, sorted(failed), concurrency=12))
    assert not still_failed
    codes = {**answered, **retried}
    assert len(set(codes.values())) == total  # one dossier per key, none twice
    assert all(CODE_RE.match(code) for code in codes.values())

    # Every outbox message is eventually delivered, each dossier exactly once at the agency.
    def all_delivered() -> bool:
        state = httpx.get(f"{sim_url}/_sim/state", timeout=10).json()
        stored, counts = database_state(config)
        return set(state["dossiers"]) == stored and counts["pending"] == counts["in_flight"] == 0

    eventually(all_delivered, 90, "every delivery")
    stored, counts = database_state(config)
    assert stored == set(codes.values())
    assert counts == {"pending": 0, "in_flight": 0, "done": total, "dead": 0}
    state = httpx.get(f"{sim_url}/_sim/state", timeout=10).json()
    assert set(state["dossiers"]) == stored
    assert state["effects"]["deliver"] == total  # exactly one effect per dossier code
    for code, record in state["dossiers"].items():
        assert record["received"]["code"] == code

    # SIGTERM: a clean exit.
    assert restarted.stop(signal.SIGTERM, timeout=30) == 0
    logs = [daemon.stderr_tail(), (tmp_path / "daemon-2.log").read_text(encoding="utf-8")]
    assert_no_personal_data(*logs)
    assert_json_lines(logs[1])
    assert '"daemon stopped"' in logs[1]


def test_worker_command_delivers_and_stops_cleanly(tmp_path: Path, processes: list[Process]) -> None:
    sim_url = start_simulator(tmp_path, processes)
    config_path = write_config(tmp_path, free_port())
    prepare_database(config_path, sim_url)
    settings = load_settings(config_path, environ={})
    runtime = Runtime.from_settings(settings, Database.connect(settings.database.url))
    try:
        answer = asyncio.run(submit(runtime, Principal("portal"), submission(1), idempotency_key=None, now=utcnow()))
    finally:
        runtime.close()
    code = answer.body["code"]

    worker = Process(["worker", "--config", str(config_path)], tmp_path, tmp_path / "worker.log")
    processes.append(worker)
    worker.wait_for_line("worker running")
    eventually(lambda: code in httpx.get(f"{sim_url}/_sim/state", timeout=10).json()["dossiers"], 30, "the delivery")
    assert worker.stop(signal.SIGTERM) == 0
    log = (tmp_path / "worker.log").read_text(encoding="utf-8")
    assert_json_lines(log)
    assert_no_personal_data(log)


def run_gateway(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


#: The gateway's command line run in the test's process: its arguments and working folder; what it printed and its code.
InProcess = Callable[[list[str], Path], subprocess.CompletedProcess[str]]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """:func:`run_gateway` through the CLI's entry point in this process (what the console script runs), with no
    ``DVC_GATEWAY_`` variable. The refusals below come before the daemon starts; each test runs one of them as a
    process too, for the exit code and the single line as a user sees them."""

    def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        for name in [name for name in os.environ if name.startswith("DVC_GATEWAY_")]:
            monkeypatch.delenv(name)
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = main(args)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


def test_serve_refuses_a_bad_configuration_in_one_line(tmp_path: Path, in_process: InProcess) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\nurl = "sqlite:///x.db"\n[signing]\ntrust_anchors = ["missing.pem"]\n', "utf-8")
    missing = run_gateway(["serve", "--config", str(tmp_path / "missing.toml")], tmp_path)
    for result in (missing, in_process(["serve", "--config", str(bad)], tmp_path)):
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("dvc-gateway: error:")
        assert "Traceback" not in result.stderr


def assert_one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dvc-gateway: error: ")
    return lines[0]


def test_serve_and_worker_refuse_to_start_without_a_configuration_file(tmp_path: Path, in_process: InProcess) -> None:
    for result in (run_gateway(["serve"], tmp_path), in_process(["worker"], tmp_path)):
        line = assert_one_error_line(result)
        assert "no configuration file: give --config FILE or set DVC_GATEWAY_CONFIG" in line
        assert "--dev" in line
    assert not (tmp_path / "var").exists()  # refused before any database was made


def test_serve_refuses_a_configuration_without_api_tokens(
    tmp_path: Path,
    processes: list[Process],
    in_process: InProcess,
) -> None:
    config = write_config(tmp_path, 0, tokens=False)
    line = assert_one_error_line(in_process(["serve", "--config", str(config)], tmp_path))
    assert "no API tokens: the configuration has no [[auth.tokens]]" in line
    # The workers answer no request: they need no token.
    worker = Process(["worker", "--config", str(config)], tmp_path, tmp_path / "worker.log")
    processes.append(worker)
    worker.wait_for_line("worker running")
    assert worker.stop(signal.SIGTERM) == 0


def test_dev_starts_without_a_configuration_file_and_warns(tmp_path: Path, processes: list[Process]) -> None:
    daemon = Process(["serve", "--dev"], tmp_path, tmp_path / "daemon.log", env={"DVC_GATEWAY_SERVER__PORT": "0"})
    processes.append(daemon)
    url = daemon.wait_for_line(r"listening on (http://\S+)").group(1)
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        response = client.get("/api/v1/dossiers/x", headers={"Authorization": f"Bearer {PORTAL_TOKEN}"})
        assert response.status_code == 401
    assert daemon.stop(signal.SIGTERM) == 0
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert_json_lines(log)
    warnings = [entry["message"] for entry in map(json.loads, log.splitlines()) if entry["level"] == "warning"]
    assert "no configuration file (--dev): running on the defaults" in warnings
    assert "no API tokens configured: every authenticated request is refused (401)" in warnings
    assert "no trust anchors configured: no signature is trusted" in warnings
    assert f"created folder {tmp_path / 'var'} for the database" in log
    assert (tmp_path / "var" / "gateway.db").is_file()  # the default, in the working directory


def test_serve_refuses_an_unmigrated_postgresql_database(tmp_path: Path, in_process: InProcess) -> None:
    with postgres_schema_url() as url:
        config = write_config(tmp_path, 0, url)
        for command in ("serve", "worker"):
            line = assert_one_error_line(in_process([command, "--config", str(config)], tmp_path))
            assert line.endswith("is not migrated: run 'dvc-gateway db upgrade'"), line


# ----------------------------------------------------------------------------------------------------------------------
# In process: the API wakes the worker


@contextlib.asynccontextmanager
async def daemon_beside(
    sim_app: Any, tmp_path: Path, *, backoff_max_seconds: int = 1
) -> AsyncIterator[tuple[Runtime, str]]:
    """The daemon (API and worker, the worker polling only every 60 s) in this process, delivering to ``sim_app``
    served on 127.0.0.1: its runtime and its URL, once it is ready."""
    sim_sock = listen_socket("127.0.0.1", 0)
    sim_stop = asyncio.Event()
    sim_task = asyncio.create_task(serve_asgi(sim_app, sim_sock, stop=sim_stop))
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    gateway_sock = listen_socket("127.0.0.1", 0)
    config_path = write_config(tmp_path, gateway_sock.getsockname()[1])
    config = config_path.read_text(encoding="utf-8")
    config = config.replace("backoff_max_seconds = 1\n", f"backoff_max_seconds = {backoff_max_seconds}\n")
    config_path.write_text(config, encoding="utf-8")
    prepare_database(config_path, sim_url)
    settings = load_settings(config_path, environ={})
    runtime = Runtime.from_settings(settings, Database.connect(settings.database.url))
    ready = asyncio.Event()
    stop = asyncio.Event()
    daemon = asyncio.create_task(
        run_daemon(
            runtime,
            sock=gateway_sock,
            stop=stop,
            on_ready=lambda _url: ready.set(),
            worker_options={"poll_interval": 60},
        )
    )
    try:
        with anyio.fail_after(20):
            await ready.wait()
        await asyncio.sleep(0.3)  # the worker's first (empty) poll is behind it
        yield runtime, f"http://127.0.0.1:{gateway_sock.getsockname()[1]}"
    finally:
        stop.set()
        sim_stop.set()
        with anyio.fail_after(30):
            await daemon
            await sim_task
        gateway_sock.close()
        sim_sock.close()


async def test_api_writes_wake_the_worker(tmp_path: Path) -> None:
    sim_app = create_simulator(token=OUTBOUND_TOKEN)
    async with daemon_beside(sim_app, tmp_path) as (runtime, url):
        # The worker would poll only every 60 s: a prompt delivery means the API woke it.
        with anyio.fail_after(20):
            assert "notify_outbox" in runtime.extras
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post(
                    "/api/v1/dossiers",
                    json=submission(1),
                    headers={"Authorization": f"Bearer {PORTAL_TOKEN}"},
                )
                assert response.status_code == 201, response.text
                code = response.json()["code"]
            while code not in sim_app.state.simulator.dossiers:
                await asyncio.sleep(0.02)
    assert "notify_outbox" not in runtime.extras


def test_serve_refuses_an_unusable_integration_section_before_starting(tmp_path: Path, in_process: InProcess) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
        '[national_portal]\nbase_url = "http://127.0.0.1:9"\nusername = "u"\npassword = "p"\ndstcode = "H38"\n',
        "utf-8",
    )
    for args in (["db", "upgrade", "--config", str(config)], ["serve", "--config", str(config)]):
        result = in_process(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "dvc-gateway: error: [national_portal] madonvi: is required"


def test_the_server_parses_http_with_httptools() -> None:
    """uvicorn picks its C parser when httptools is installed (a dependency): the pure-Python one costs about twice
    the CPU per request."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from gateway.serving import uvicorn_server

    server = uvicorn_server(create_simulator())
    server.config.load()
    assert server.config.http_protocol_class is HttpToolsProtocol
