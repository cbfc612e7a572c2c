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
        (["payment", "--token", "t"], "simulate payment does not take --token"),
        (["agency", "--mapping-variant"], "--mapping-variant is for simulate agency --protocol soap"),
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


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", *args, "--port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _first_line(process, 30)
    except BaseException:
        process.kill()
        process.wait(timeout=30)
        raise
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return process, match.group(1)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


@pytest.mark.parametrize("variant", [False, True], ids=["reference", "mapping-variant"])
def test_simulate_soap_agency_serves_its_wsdl(tmp_path: Path, variant: bool) -> None:
    extra = ["--mapping-variant"] if variant else []
    process, url = _start(tmp_path, "agency", "--protocol", "soap", *extra)
    try:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            wsdl = client.get("/soap?wsdl")
            assert wsdl.status_code == 200
            assert b"definitions" in wsdl.content
            assert (b"urn:sxd:motcua:2.0" in wsdl.content) is variant  # the variant's namespace
            assert (b"TiepNhanHoSo" in wsdl.content) is not variant
            assert client.get("/_sim/state").json()["variant"] is variant
    finally:
        _stop(process)


@pytest.mark.parametrize(
    ("upstream", "path", "method"),
    [
        ("national-portal", "/_sim/state", "GET"),
        ("payment", "/_sim/state", "GET"),
        ("postal", "/_sim/state", "GET"),
        ("sms", "/_sim/state", "GET"),
    ],
)
def test_simulate_other_upstreams_start_and_answer(tmp_path: Path, upstream: str, path: str, method: str) -> None:
    process, url = _start(tmp_path, upstream)
    try:
        with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
            answer = client.request(method, path)
            assert answer.status_code == 200, answer.text
            assert isinstance(answer.json(), dict)
    finally:
        _stop(process)
