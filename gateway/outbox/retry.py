"""How often and how patiently a failed delivery is retried: :class:`RetryPolicy`."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import tenacity

if TYPE_CHECKING:
    from gateway.sections import OutboxSection


@functools.lru_cache(maxsize=32)
def _wait_strategy(initial: float, maximum: float, jitter: float) -> tenacity.wait.wait_base:
    # tenacity 9 renamed ``initial`` to ``multiplier`` (``initial`` warns); tenacity 8 knows only ``initial``.
    if "multiplier" in inspect.signature(tenacity.wait_exponential_jitter).parameters:
        return tenacity.wait_exponential_jitter(multiplier=initial, max=maximum, jitter=jitter)
    return tenacity.wait_exponential_jitter(initial=initial, max=maximum, jitter=jitter)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a message is retried (the ``[outbox]`` configuration section).

    Attempt *n* failing transiently is retried after ``initial · 2^(n-1) + uniform(0, jitter)`` seconds, at most
    ``max_seconds``, or after the upstream's ``Retry-After`` when it asked for longer (:meth:`retry_wait`, at most
    ``max_seconds`` too); after ``max_attempts`` attempts the message is dead.
    """

    max_attempts: int = 8
    initial_seconds: float = 2.0
    max_seconds: float = 600.0
    jitter_seconds: float = 2.0
    lease_seconds: float = 60.0
    concurrency_per_agency: int = 4

    def __post_init__(self) -> None:
        fields = (
            ("attempts", self.max_attempts),
            ("backoff_initial_seconds", self.initial_seconds),
            ("backoff_max_seconds", self.max_seconds),
            ("jitter_seconds", self.jitter_seconds),
            ("lease_seconds", self.lease_seconds),
            ("concurrency_per_agency", self.concurrency_per_agency),
        )
        for key, value in fields:
            if not _is_number(value):
                raise ValueError(f"[outbox] {key} must be a number, got {value!r}")
        rules = (
            ("attempts", self.max_attempts, isinstance(self.max_attempts, int) and self.max_attempts >= 1, "≥ 1"),
            ("backoff_initial_seconds", self.initial_seconds, self.initial_seconds > 0, "> 0"),
            ("backoff_max_seconds", self.max_seconds, self.max_seconds >= self.initial_seconds, "≥ the initial"),
            ("jitter_seconds", self.jitter_seconds, self.jitter_seconds >= 0, "≥ 0"),
            ("lease_seconds", self.lease_seconds, self.lease_seconds > 0, "> 0"),
            (
                "concurrency_per_agency",
                self.concurrency_per_agency,
                isinstance(self.concurrency_per_agency, int) and self.concurrency_per_agency >= 1,
                "≥ 1",
            ),
        )
        for key, value, ok, rule in rules:
            if not ok:
                raise ValueError(f"[outbox] {key} must be {rule}, got {value!r}")

    @classmethod
    def of(cls, outbox: OutboxSection) -> RetryPolicy:
        """The policy of the ``[outbox]`` section."""
        return cls(
            max_attempts=outbox.max_attempts,
            initial_seconds=outbox.initial_seconds,
            max_seconds=outbox.max_seconds,
            jitter_seconds=outbox.jitter_seconds,
            lease_seconds=outbox.lease_seconds,
            concurrency_per_agency=outbox.concurrency_per_agency,
        )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)

    def backoff_seconds(self, attempt: int) -> float:
        """The wait after attempt number ``attempt`` (1 = the first delivery) failed, jitter included."""
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(_wait_strategy(self.initial_seconds, self.max_seconds, self.jitter_seconds)(state))

    def retry_wait(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after attempt ``attempt`` failed: :meth:`backoff_seconds`, or longer when the upstream asked
        for ``retry_after`` seconds (its ``Retry-After``), never longer than ``max_seconds`` for that."""
        wait = self.backoff_seconds(attempt)
        if retry_after is None or not retry_after > wait:
            return wait
        return max(wait, min(retry_after, self.max_seconds))

    def backoff_bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest wait ``backoff_seconds(attempt)`` can give."""
        try:
            base = self.initial_seconds * 2 ** (max(1, attempt) - 1)
        except OverflowError:
            base = self.max_seconds
        return min(base, self.max_seconds), min(base + self.jitter_seconds, self.max_seconds)
