"""What ``serve`` and ``worker`` do once they serve: the objects built to start are set aside from the garbage
collector (they live as long as the process; every full collection would walk them again)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# The daemon replaced by one that reports itself ready and returns: what the command does around it is what runs.
SCRIPT = """
import gc, sys
import gateway.daemon

async def daemon(runtime, *, on_ready, **options):
    print("frozen before ready:", gc.get_freeze_count())
    on_ready(None if options.get("api") is False else "http://127.0.0.1:1")
    print("frozen after ready:", gc.get_freeze_count())
    runtime.close()

gateway.daemon.run_daemon = daemon
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_the_start_up_objects_are_set_aside_once_serving(tmp_path: Path, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, command, "--dev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DVC_GATEWAY_SERVER__PORT": "0"},
    )
    assert done.returncode == 0, done.stderr
    counts = dict(line.rsplit(": ", 1) for line in done.stdout.splitlines() if line.startswith("frozen"))
    assert int(counts["frozen before ready"]) == 0
    assert int(counts["frozen after ready"]) > 10_000  # the modules, the settings, the engine…
