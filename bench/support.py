"""What several benchmarks share: profiling a block with pyinstrument, and starting a simulator as a process."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["profiled", "start_simulator"]


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the block with pyinstrument into ``path`` (nothing without one)."""
    if path is None:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(path).write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")


def start_simulator(work: Path, *arguments: str) -> tuple[subprocess.Popen[str], str]:
    """``dvc-gateway simulate agency --port 0 ARGUMENTS`` in ``work``, and the URL it listens on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    command = [sys.executable, "-m", "gateway", "simulate", "agency", "--port", "0", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=work)
    assert process.stdout is not None
    found = re.search(r"listening on (http://\S+)", process.stdout.readline())
    if found is None:
        process.kill()
        raise SystemExit("the agency simulator did not start")
    return process, found.group(1)
