"""Periodic jobs run beside the outbox worker: polling agencies, postal tracking, payment queries.

Each job is a coroutine function run every ``interval_seconds`` (the first run after a random part of the interval,
so processes started together do not poll in step); a failing run is logged and the job goes on. Jobs that must not
run twice at once across processes claim their work in the database (leases), as the outbox does.

:func:`run_jobs` runs the jobs the composition root collected from the flows until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = ["PeriodicJob", "run_jobs"]

log = logging.getLogger("gateway.periodic")


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[object]]

    def __post_init__(self) -> None:
        if not self.interval_seconds > 0:
            raise ValueError(f"job {self.name}: interval_seconds must be positive")


async def _loop(job: PeriodicJob, stop: asyncio.Event) -> None:
    delay = random.uniform(0, job.interval_seconds)  # noqa: S311 - spreading load, not security
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing run must not stop the job
            log.warning("periodic job failed", extra={"job": job.name, "error": f"{type(exc).__name__}: {exc}"})
        delay = job.interval_seconds


async def run_jobs(periodic: Sequence[PeriodicJob], stop: asyncio.Event) -> None:
    """Run ``periodic`` until ``stop`` is set (a run in progress is finished, not cut)."""
    if not periodic:
        return
    async with asyncio.TaskGroup() as group:
        for job in periodic:
            group.create_task(_loop(job, stop), name=f"periodic:{job.name}")
