"""``dvc-gateway simulate agency``: it starts on 127.0.0.1, answers the reference contract, and stops on SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

TOKEN = "simulated-agency-token-0123"


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return lines.get(timeout=0.1)
        except queue.Empty:
            if process.poll() is not None:
                break
    raise AssertionError("the simulator printed no line")


def test_simulate_agency_serves_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "agency", "--port", "0", "--token", TOKEN],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(process, 30)
        match = re.search(r"listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        url = match.group(1)
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            assert client.get("/_sim/state").json()["dossiers"] == {}
            dossier = {"code": "000.00.23.H38-261123-0001", "procedure_code": "1.009794"}
            assert client.post("/dossiers", json=dossier, headers={"Idempotency-Key": "k1"}).status_code == 401
            auth = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k1"}
            created = client.post("/dossiers", json=dossier, headers=auth)
            assert created.status_code == 201
            again = client.post("/dossiers", json=dossier, headers=auth)
            assert again.headers["Idempotent-Replayed"] == "true"
            assert client.get("/_sim/state").json()["effects"] == {"deliver": 1}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agency", "--protocol", "soap"], "not available yet"),
        (["payment"], "not available yet"),
        (["agency", "--port", "70000"], "--port"),
    ],
)
def test_simulate_unavailable_choices_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
