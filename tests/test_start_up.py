"""What ``serve`` and ``worker`` run on and do once they serve: the event loop ``[server] event_loop`` names, and
the objects built to start set aside from the garbage collector (they live as long as the process; every full
collection would walk them again)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.serving import DaemonError, event_loop_factory, run_loop

try:
    import uvloop
except ImportError:  # pragma: no cover - a dependency wherever it builds (not on Windows)
    uvloop = None

# The daemon replaced by one that reports itself ready and returns: what the command does around it is what runs.
SCRIPT = """
import asyncio, gc, sys
import gateway.daemon

async def daemon(runtime, *, on_ready, **options):
    print("event loop:", type(asyncio.get_running_loop()).__module__)
    print("frozen before ready:", gc.get_freeze_count())
    on_ready(None if options.get("api") is False else "http://127.0.0.1:1")
    print("frozen after ready:", gc.get_freeze_count())
    runtime.close()

gateway.daemon.run_daemon = daemon
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, command, "--dev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DVC_GATEWAY_SERVER__PORT": "0", **env},
    )


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_start_up_objects_are_set_aside_once_serving(tmp_path: Path, command: str) -> None:
    done = run(command, tmp_path)
    assert done.returncode == 0, done.stderr
    counts = dict(line.rsplit(": ", 1) for line in done.stdout.splitlines() if line.startswith("frozen"))
    assert int(counts["frozen before ready"]) == 0
    assert int(counts["frozen after ready"]) > 10_000  # the modules, the settings, the engine…


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed here")
@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize(("setting", "module"), [(None, "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio.")])
def test_the_daemon_runs_on_the_event_loop_the_settings_name(
    tmp_path: Path, command: str, setting: str | None, module: str
) -> None:
    done = run(command, tmp_path, **({"DVC_GATEWAY_SERVER__EVENT_LOOP": setting} if setting else {}))
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if line.startswith("event loop: ")]
    assert line.removeprefix("event loop: ").startswith(module)


def test_an_unknown_event_loop_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    done = run("serve", tmp_path, DVC_GATEWAY_SERVER__EVENT_LOOP="trio")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dvc-gateway: error: [server] event_loop: must be one of 'auto', 'asyncio' or 'uvloop' "
        "(from DVC_GATEWAY_SERVER__EVENT_LOOP)"
    ]
    assert "event loop: " not in done.stdout


def test_uvloop_asked_for_where_it_is_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # its import fails, as where it is not installed

    async def never() -> None:
        raise AssertionError("ran")

    with pytest.raises(DaemonError, match="uvloop is not installed"):
        run_loop(never(), event_loop="uvloop")
    assert event_loop_factory("auto") is asyncio.new_event_loop  # auto falls back to asyncio's own


def test_run_loop_runs_a_coroutine_to_its_end_on_the_loop_named() -> None:
    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_loop(kind(), event_loop="asyncio").startswith("asyncio.")
    if uvloop is not None:
        assert run_loop(kind()).startswith("uvloop")
