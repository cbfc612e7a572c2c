"""What several benchmarks share: profiling a block with pyinstrument, starting a simulator as a process, resetting
it and counting what it received, and measuring a floor against it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "Cpu",
    "both_runs",
    "child_env",
    "cpu_seconds",
    "delivered",
    "floor_phase",
    "profiled",
    "rate_table",
    "reset_simulator",
    "start_simulator",
]


#: The tree these benchmarks belong to: what their child processes import, whatever is installed.
_ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """The environment of a benchmark's child process: this one's, without the gateway's own settings
    (``DVC_GATEWAY_…``), and importing the gateway from this tree (a copy of the repository measures itself)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    return env


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
    env = child_env()
    command = [sys.executable, "-m", "gateway", "simulate", "agency", "--port", "0", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=work)
    assert process.stdout is not None
    found = re.search(r"listening on (http://\S+)", process.stdout.readline())
    if found is None:
        process.kill()
        raise SystemExit("the agency simulator did not start")
    return process, found.group(1)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its living descendants (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


@dataclass
class Cpu:
    """CPU seconds spent in blocks measured with :meth:`phase`: by this process (``time.process_time``, every thread)
    and by a simulator process, per phase name. On a busy machine these move less than the rates."""

    simulator_pid: int
    own: dict[str, float] = field(default_factory=dict)
    simulator: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        own, simulator = time.process_time(), cpu_seconds(self.simulator_pid)
        try:
            yield
        finally:
            self.own[name] = self.own.get(name, 0.0) + time.process_time() - own
            self.simulator[name] = self.simulator.get(name, 0.0) + cpu_seconds(self.simulator_pid) - simulator

    def report(self, count: int) -> str:
        """One line per phase: CPU milliseconds per message here and in the simulator."""
        lines = [f"{'CPU ms per message':<30}{'here':>10}{'simulator':>11}"]
        for name in self.own:
            lines.append(
                f"{name:<30}{self.own[name] * 1000 / count:>10.2f}{self.simulator[name] * 1000 / count:>11.2f}"
            )
        return "\n".join(lines)


def both_runs(before: float, after: float) -> float:
    """The rate of two runs of one floor taken together (both runs' messages over both runs' time)."""
    return 2 / (1 / before + 1 / after)


def rate_table(unit: str, rows: list[tuple[str, float]], *, floor: float | None = None) -> str:
    """One line per ``(name, rate)`` under a header naming ``unit``; with ``floor``, each rate's ratio to it too."""
    lines = [f"{'':<30}{unit:>14}" + (f"{'ratio':>8}" if floor is not None else "")]
    for name, rate in rows:
        lines.append(f"{name:<30}{rate:>14.1f}" + (f"{rate / floor:>7.2f}x" if floor is not None else ""))
    return "\n".join(lines)


async def reset_simulator(sim_url: str) -> None:
    """Forget what the agency simulator received (its dossiers, effects and idempotency keys)."""
    async with httpx.AsyncClient(trust_env=False) as client:
        (await client.post(f"{sim_url}/_sim/reset")).raise_for_status()


async def delivered(sim_url: str) -> int:
    """How many dossiers the agency simulator has taken in since its last reset."""
    async with httpx.AsyncClient(trust_env=False) as client:
        return int((await client.get(f"{sim_url}/_sim/state")).json()["effects"].get("deliver", 0))


async def floor_phase(sim_url: str, floor: Callable[[], Awaitable[float]], count: int, cpu: Cpu, name: str) -> float:
    """The rate ``floor()`` measures, as the phase ``name`` on a simulator reset first; it must deliver ``count``."""
    await reset_simulator(sim_url)
    with cpu.phase(name):
        rate = await floor()
    assert await delivered(sim_url) == count
    return rate


#: Messages each side delivers before its timed part: connections opened, caches filled, statements compiled, as in a
#: client or a gateway that has been running for a while. The rates are those of the messages after them.
WARMUP = 16


async def after_warmup(items: list[Any], worker: Callable[[Iterator[Any]], Awaitable[None]], concurrency: int) -> float:
    """``concurrency`` copies of ``worker`` deliver the first :data:`WARMUP` items between them, then the others,
    timed: their rate."""

    async def deliver(part: list[Any]) -> None:
        shared = iter(part)
        await asyncio.gather(*(worker(shared) for _ in range(concurrency)))

    await deliver(items[:WARMUP])
    start = time.perf_counter()
    await deliver(items[WARMUP:])
    return (len(items) - WARMUP) / (time.perf_counter() - start)


async def outbox_rate(runtime: Any, total: int, concurrency: int) -> float:
    """The rate of an outbox worker (the runtime's :class:`~gateway.bootstrap.Composition`, ``concurrency`` in
    flight, claims of up to four times that) over the messages it delivers after its first :data:`WARMUP`, of
    ``total``."""
    from gateway.bootstrap import Composition
    from gateway.outbox import RetryPolicy
    from gateway.workers import OutboxWorker

    dispatcher = Composition(runtime)
    policy = RetryPolicy(concurrency_per_agency=concurrency)
    worker = OutboxWorker(runtime.db, dispatcher, policy=policy, batch=4 * concurrency, max_in_flight=concurrency)
    try:
        return await _worker_rate(worker, total)
    finally:
        await dispatcher.aclose()


async def _worker_rate(worker: Any, total: int) -> float:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    start = 0.0
    try:
        # The worker's own counters: polling the database here would compete with the worker for it.
        while (done := worker.counters["delivered"] + worker.counters["dead"]) < total:
            if task.done():
                task.result()
                raise RuntimeError("the worker stopped")
            if not start and done >= WARMUP:
                start = time.perf_counter()
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        await task
    if worker.counters["dead"]:
        raise RuntimeError(f"{worker.counters['dead']} messages dead")
    return (total - WARMUP) / elapsed
