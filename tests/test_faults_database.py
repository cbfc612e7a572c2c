"""The database under stress: PostgreSQL restarted under the daemon during intake and delivery, and SQLite on a full
disk.

The daemon (``python -m gateway serve``) runs as a real process, the agency simulator in this one, on 127.0.0.1.
PostgreSQL is a private cluster made by the test (:mod:`tests.pg_cluster`), never the machine's shared server; the
small disk is a ``tmpfs`` mounted with a size (root only). Both are skipped, with the reason, where the machine
cannot. Every wait has a limit; nothing asserts a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.simulators.agency import create_app as create_simulator
from tests.pg_cluster import private_cluster
from tests.servers import ServerThread
from tests.test_daemon import (
    OUTBOUND_TOKEN,
    PORTAL_TOKEN,
    Process,
    _burst,
    assert_no_personal_data,
    database_state,
    eventually,
    free_port,
    prepare_database,
    submission,
    write_config,
)

HEADERS = {"Authorization": f"Bearer {PORTAL_TOKEN}"}
#: The burst during which the database stops (after ``STOP_AFTER`` answers), then ``DURING`` submissions while down.
BURST, STOP_AFTER, DURING = 20, 6, 3
#: For the report: seconds from the start of the retries to the first 201, by key prefix.
FIRST_CREATED: dict[str, float] = {}


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:  # whatever a failed test left running
        process.kill()


@pytest.fixture
def simulator() -> Iterator[ServerThread]:
    """The agency simulator, in this process."""
    with ServerThread(create_simulator(token=OUTBOUND_TOKEN)) as server:
        yield server


def assert_retry_later(response: httpx.Response, statuses: tuple[int, ...] = (503,)) -> None:
    """A refusal the caller should retry: the status, the JSON error shape and ``Retry-After``."""
    assert response.status_code in statuses, (response.status_code, response.text)
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert int(response.headers["Retry-After"]) > 0


def post(client: httpx.Client, index: int, key: str) -> httpx.Response:
    return client.post("/api/v1/dossiers", json=submission(index), headers={**HEADERS, "Idempotency-Key": key})


def start_daemon(tmp_path: Path, processes: list[Process], config: Path) -> str:
    daemon = Process(["serve", "--config", str(config)], tmp_path, tmp_path / "daemon.log")
    processes.append(daemon)
    return daemon.wait_for_line(r"listening on (http://\S+)", timeout=120).group(1)


def retry_until_created(client: httpx.Client, indexes: list[int], prefix: str, timeout: float) -> dict[int, str]:
    """Submit each index again with its key until it is answered 201; index → code."""
    created: dict[int, str] = {}
    began = time.monotonic()
    deadline = began + timeout
    while len(created) < len(indexes):
        assert time.monotonic() < deadline, f"not recovered within {timeout} s: {len(created)} of {len(indexes)}"
        for index in indexes:
            if index in created:
                continue
            response = post(client, index, f"{prefix}-{index}")
            if response.status_code == 201:
                created[index] = response.json()["code"]
                FIRST_CREATED.setdefault(prefix, time.monotonic() - began)
            else:
                assert_retry_later(response, (503, 507))
        if len(created) < len(indexes):
            time.sleep(0.2)
    return created


# ----------------------------------------------------------------------------------------------------------------------
# PostgreSQL restarted under load


def test_postgresql_restart_during_intake_and_delivery_loses_nothing(
    tmp_path: Path,
    processes: list[Process],
    simulator: ServerThread,
) -> None:
    with private_cluster() as cluster:
        sim_url = simulator.base_url
        # Slow answers: deliveries are in flight when the database goes away.
        httpx.post(f"{sim_url}/_sim/faults", json={"delay_seconds": 0.1}, timeout=10).raise_for_status()
        config = write_config(tmp_path, free_port(), cluster.url)
        prepare_database(config, sim_url)
        url = start_daemon(tmp_path, processes, config)

        # A burst; the database is stopped while it runs (after the 10th answer): answers are 201 or 503, never 500.
        stopping = threading.Thread(target=cluster.stop, args=("fast",))

        def on_answer(count: int) -> None:
            if count == STOP_AFTER:
                stopping.start()

        answered, failed = asyncio.run(_burst(url, list(range(BURST)), concurrency=6, on_answer=on_answer))
        stopping.join(timeout=60)
        assert not cluster.running()
        assert set(failed.values()) <= {"HTTP 503"}, failed
        # While it is down: intake and reads answer 503 with Retry-After, the daemon stays up.
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
            for index in range(BURST, BURST + DURING):
                assert_retry_later(post(client, index, f"crash-test-{index}"))
            assert_retry_later(client.get(f"/api/v1/dossiers/{next(iter(answered.values()))}", headers=HEADERS))
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200

            # Back: the same daemon (no restart) answers again; the portal's retries with the same keys succeed.
            cluster.start()
            back = time.monotonic()
            retried = retry_until_created(
                client, sorted(failed) + list(range(BURST, BURST + DURING)), "crash-test", timeout=60
            )
            recovered = time.monotonic() - back
            for index, code in answered.items():  # every 201 survived
                response = client.get(f"/api/v1/dossiers/{code}", headers=HEADERS)
                assert response.status_code == 200, (index, response.text)

        codes = {**answered, **retried}
        assert len(set(codes.values())) == BURST + DURING  # one dossier per key

        # Every delivery is made, each once at the agency; no claim left behind.
        def all_delivered() -> bool:
            state = httpx.get(f"{sim_url}/_sim/state", timeout=10).json()
            stored, counts = database_state(config)
            return set(state["dossiers"]) == stored and counts["pending"] == counts["in_flight"] == 0

        eventually(all_delivered, 90, "every delivery after the restart")
        stored, counts = database_state(config)
        assert stored == set(codes.values())
        assert counts == {"pending": 0, "in_flight": 0, "done": BURST + DURING, "dead": 0}
        assert httpx.get(f"{sim_url}/_sim/state", timeout=10).json()["effects"]["deliver"] == BURST + DURING
        delivered = time.monotonic() - back
    assert_no_personal_data((tmp_path / "daemon.log").read_text(encoding="utf-8"))
    print(
        f"\npostgresql restart: {len(answered)} answered 201 before/while stopping, {len(failed)} answered 503 in the "
        f"burst + {DURING} during the outage, all kept or created on retry; "
        f"first 201 {FIRST_CREATED['crash-test']:.2f} s and all {recovered:.2f} s after the server started, "
        f"every delivery done {delivered:.2f} s after"
    )


# ----------------------------------------------------------------------------------------------------------------------
# SQLite on a full disk


def tmpfs_unavailable(folder: Path) -> str | None:
    if os.geteuid() != 0:
        return "mounting a size-limited tmpfs needs root"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        return f"mount -t tmpfs refused: {result.stderr.strip()}"
    return None


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted after the test."""
    folder = Path(tempfile.mkdtemp(prefix="dvc-small-disk-"))
    reason = tmpfs_unavailable(folder)
    if reason is not None:
        folder.rmdir()
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
        with contextlib.suppress(OSError):
            folder.rmdir()


def fill(folder: Path) -> Path:
    """Write a file until the disk is full; the file (delete it to give the space back)."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):  # large writes, then ever smaller ones into the last free bytes
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)
    return filler


def integrity(database: Path) -> list[Any]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return connection.execute("PRAGMA integrity_check").fetchall()
    finally:
        connection.close()


def test_sqlite_on_a_full_disk_refuses_intake_keeps_its_data_and_resumes(
    tmp_path: Path,
    small_disk: Path,
    processes: list[Process],
    simulator: ServerThread,
) -> None:
    database = small_disk / "gateway.db"
    sim_url = simulator.base_url
    config = write_config(tmp_path, free_port(), f"sqlite:///{database}")
    prepare_database(config, sim_url)
    url = start_daemon(tmp_path, processes, config)
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        before = {index: post(client, index, f"disk-{index}") for index in range(3)}
        assert {response.status_code for response in before.values()} == {201}
        eventually(lambda: database_state(config)[1]["done"] == 3, 60, "the first deliveries")

        filler = fill(small_disk)
        refused = [post(client, index, f"disk-{index}") for index in range(3, 6)]
        for response in refused:
            assert_retry_later(response, (507, 503))
        statuses = sorted({response.status_code for response in refused})
        assert integrity(database) == [("ok",)]
        # What was answered 201 is still there while the disk is full; reading it through the API is refused too,
        # since each read of personal data is an audit entry that cannot be written now.
        codes = {response.json()["code"] for response in before.values()}
        assert database_state(config)[0] == codes
        assert_retry_later(client.get(f"/api/v1/dossiers/{min(codes)}", headers=HEADERS), (507,))
        assert client.get("/healthz").status_code == 200

        filler.unlink()
        back = time.monotonic()
        created = retry_until_created(client, [3, 4, 5], "disk", timeout=60)
        recovered = time.monotonic() - back
    assert len(set(created.values())) == 3
    assert database_state(config)[0] == codes | set(created.values())
    eventually(lambda: database_state(config)[1]["done"] == 6, 60, "the deliveries after the space returned")
    state = httpx.get(f"{sim_url}/_sim/state", timeout=10).json()
    assert state["effects"]["deliver"] == 6
    assert integrity(database) == [("ok",)]
    assert_no_personal_data((tmp_path / "daemon.log").read_text(encoding="utf-8"))
    print(
        f"\nsqlite full disk: intake answered {statuses} (JSON error, Retry-After) while full, 3 dossiers answered 201 "
        f"before kept, integrity ok; first 201 {FIRST_CREATED['disk']:.2f} s and all {recovered:.2f} s after the space "
        f"returned, all 6 delivered"
    )
