"""The outbox's message states and keys."""

from __future__ import annotations

from typing import Final

PENDING: Final = "pending"
IN_FLIGHT: Final = "in_flight"
DONE: Final = "done"
DEAD: Final = "dead"
STATES = (PENDING, IN_FLIGHT, DONE, DEAD)

#: States of an earlier message of the same ordering key that hold a later one back.
BLOCKING = (PENDING, IN_FLIGHT, DEAD)
#: ``last_error`` is cut to this many characters.
MAX_ERROR_LENGTH = 2000
#: In a ``max_in_flight_per_target`` mapping, the limit for targets not named in it.
ANY_TARGET = "*"


def message_key(dossier_code: str, step: str) -> str:
    """The idempotency key of one step of one dossier (``000.00.23.H38-261122-0001:deliver``)."""
    return f"{dossier_code}:{step}"
