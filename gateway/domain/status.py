"""Dossier statuses, their national portal codes, and the legal transitions between them.

Status model (``docs/architecture.md``), with the national portal's ``TrangThaiHoSo`` codes kept in one table,
:data:`NATIONAL_CODES`:

====================  ====  =========================================================
status                code  meaning
====================  ====  =========================================================
submitted             1     new, not yet received by the agency
received              2     accepted as complete; due date set
refused               3     not accepted (reason required)
processing            4     with the specialist unit (or another agency, *liên thông*)
supplement_requested  5     applicant must add/fix components (list and reason required)
fee_requested         6     financial obligation to fulfil
withdrawn             7     applicant withdrew
suspended             8     processing stopped (reason required)
completed             9     result ready
returned              10    result handed over (in person or delivered by post)
====================  ====  =========================================================

Legal transitions, as a one-stop clerk handles a dossier (:data:`TRANSITIONS`):

====================  =========================================================================================
from                  to
====================  =========================================================================================
submitted             received, refused, withdrawn, supplement_requested (incomplete at reception)
received              processing, supplement_requested, fee_requested, refused, withdrawn, suspended, completed
processing            processing (a *liên thông* transfer to another agency), supplement_requested,
                      fee_requested, suspended, completed, refused, withdrawn
supplement_requested  received, processing (the supplement arrived: back to where it was), refused, withdrawn
fee_requested         processing, received (paid: back to where it was), withdrawn, refused, completed
suspended             processing, received (resumed: back to where it was), refused, withdrawn
completed             returned
refused               (terminal)
withdrawn             (terminal)
returned              (terminal)
====================  =========================================================================================

Waiting statuses (:data:`WAITING_STATUSES`: supplement_requested, fee_requested, suspended) are those in which the
applicant is awaited: the processing clock is stopped. When the wait ends the dossier goes back to the status it had
before (:func:`resume_status`). Entering refused or suspended requires a ``reason``, entering supplement_requested a
``reason`` and the list of ``components`` to add or fix (:func:`required_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "NATIONAL_CODES",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "WAITING_STATUSES",
    "IllegalTransition",
    "Status",
    "can_transition",
    "check_transition",
    "is_terminal",
    "national_code",
    "required_fields",
    "resume_status",
    "status_from_national_code",
]


class Status(StrEnum):
    """A dossier's status (internal name; the value is what the API and the database carry)."""

    SUBMITTED = "submitted"
    RECEIVED = "received"
    REFUSED = "refused"
    PROCESSING = "processing"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    FEE_REQUESTED = "fee_requested"
    WITHDRAWN = "withdrawn"
    SUSPENDED = "suspended"
    COMPLETED = "completed"
    RETURNED = "returned"


S = Status

#: The national portal's ``TrangThaiHoSo`` code of each status: the one place this mapping lives.
NATIONAL_CODES: Mapping[Status, int] = MappingProxyType(
    {
        S.SUBMITTED: 1,
        S.RECEIVED: 2,
        S.REFUSED: 3,
        S.PROCESSING: 4,
        S.SUPPLEMENT_REQUESTED: 5,
        S.FEE_REQUESTED: 6,
        S.WITHDRAWN: 7,
        S.SUSPENDED: 8,
        S.COMPLETED: 9,
        S.RETURNED: 10,
    }
)
_BY_NATIONAL_CODE: Mapping[int, Status] = MappingProxyType({code: status for status, code in NATIONAL_CODES.items()})

#: The legal transitions: ``TRANSITIONS[a]`` is the set of statuses a dossier in status ``a`` may move to.
TRANSITIONS: Mapping[Status, frozenset[Status]] = MappingProxyType(
    {
        S.SUBMITTED: frozenset({S.RECEIVED, S.REFUSED, S.WITHDRAWN, S.SUPPLEMENT_REQUESTED}),
        S.RECEIVED: frozenset(
            {S.PROCESSING, S.SUPPLEMENT_REQUESTED, S.FEE_REQUESTED, S.REFUSED, S.WITHDRAWN, S.SUSPENDED, S.COMPLETED}
        ),
        S.PROCESSING: frozenset(
            {
                S.PROCESSING,
                S.SUPPLEMENT_REQUESTED,
                S.FEE_REQUESTED,
                S.SUSPENDED,
                S.COMPLETED,
                S.REFUSED,
                S.WITHDRAWN,
            }
        ),
        S.SUPPLEMENT_REQUESTED: frozenset({S.RECEIVED, S.PROCESSING, S.REFUSED, S.WITHDRAWN}),
        S.FEE_REQUESTED: frozenset({S.PROCESSING, S.RECEIVED, S.WITHDRAWN, S.REFUSED, S.COMPLETED}),
        S.SUSPENDED: frozenset({S.PROCESSING, S.REFUSED, S.WITHDRAWN, S.RECEIVED}),
        S.COMPLETED: frozenset({S.RETURNED}),
        S.REFUSED: frozenset(),
        S.WITHDRAWN: frozenset(),
        S.RETURNED: frozenset(),
    }
)

#: Statuses with no way out.
TERMINAL_STATUSES: frozenset[Status] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)

#: Statuses in which the applicant is awaited: the processing clock is stopped.
WAITING_STATUSES: frozenset[Status] = frozenset({S.SUPPLEMENT_REQUESTED, S.FEE_REQUESTED, S.SUSPENDED})

_REQUIRED_FIELDS: Mapping[Status, frozenset[str]] = MappingProxyType(
    {
        S.REFUSED: frozenset({"reason"}),
        S.SUSPENDED: frozenset({"reason"}),
        S.SUPPLEMENT_REQUESTED: frozenset({"reason", "components"}),
    }
)


class IllegalTransition(Exception):
    """A status change the state machine does not allow."""

    def __init__(self, source: Status, target: Status, allowed_targets: frozenset[Status] | None = None) -> None:
        self.source = source
        self.target = target
        targets = TRANSITIONS[source] if allowed_targets is None else allowed_targets
        allowed = ", ".join(sorted(targets)) or "none, it is terminal"
        super().__init__(
            f"illegal transition from {source.value!r} to {target.value!r} (allowed from {source.value!r}: {allowed})"
        )


def _status(value: Status | str) -> Status:
    try:
        return Status(value)
    except ValueError:
        raise ValueError(f"unknown status {value!r}") from None


def national_code(status: Status | str) -> int:
    """The national portal's ``TrangThaiHoSo`` code of ``status``."""
    return NATIONAL_CODES[_status(status)]


def status_from_national_code(code: int) -> Status:
    """The status a national portal ``TrangThaiHoSo`` code stands for; ``ValueError`` for an unknown code."""
    if isinstance(code, bool) or not isinstance(code, int) or code not in _BY_NATIONAL_CODE:
        raise ValueError(f"unknown national status code {code!r} (expected 1..10)")
    return _BY_NATIONAL_CODE[code]


def can_transition(source: Status | str, target: Status | str) -> bool:
    """Whether a dossier in ``source`` may move to ``target``."""
    return _status(target) in TRANSITIONS[_status(source)]


def check_transition(source: Status | str, target: Status | str) -> None:
    """Raise :class:`IllegalTransition` unless a dossier in ``source`` may move to ``target``."""
    a, b = _status(source), _status(target)
    if b not in TRANSITIONS[a]:
        raise IllegalTransition(a, b)


def is_terminal(status: Status | str) -> bool:
    """Whether ``status`` has no way out (refused, withdrawn, returned)."""
    return _status(status) in TERMINAL_STATUSES


def required_fields(status: Status | str) -> frozenset[str]:
    """The event fields that must be given (non-empty) to enter ``status``: ``reason``, ``components``."""
    return _REQUIRED_FIELDS.get(_status(status), frozenset())


def resume_status(before: Status | str) -> Status:
    """The status a dossier goes back to when a wait ends (supplement arrived, fee paid, suspension lifted).

    ``before`` is the status the dossier had before entering the waiting status: received or processing are
    resumed as they were; a dossier asked for a supplement at reception (``submitted``) is received once the
    supplement completes it.
    """
    b = _status(before)
    if b in (S.RECEIVED, S.PROCESSING):
        return b
    if b is S.SUBMITTED:
        return S.RECEIVED
    raise ValueError(f"a dossier cannot have entered a waiting status from {b.value!r}")
