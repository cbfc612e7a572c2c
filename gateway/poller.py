"""(being written)"""

from __future__ import annotations


def periodic_jobs(runtime, dispatcher) -> list:  # type: ignore[no-untyped-def]
    return []
