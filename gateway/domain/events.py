"""Domain events: what happened to a dossier, as plain data the message bus hands to the flows.

A use case records a change in a dossier's history and raises :class:`ChangeRecorded`; the composition root decides
which flows hear of it (the portal webhook, the national portal sync, fee payment, postal orders). Events carry
codes, ids and times only, never personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ChangeRecorded", "DomainEvent", "QuestionAnswered", "RatingGiven"]


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    """Something that happened to one dossier."""

    dossier_code: str


@dataclass(frozen=True, kw_only=True)
class ChangeRecorded(DomainEvent):
    """A history entry was recorded: a status change, a step (fee paid, shipped), or the intake itself.

    ``previous`` is the dossier's status before the entry, ``None`` for the intake's ``submitted`` entry. ``step``
    names a history entry that is not a status change (``fee_paid``, ``shipped``...). ``at`` is the entry's time,
    ``recorded_at`` the gateway's clock when it was recorded.
    """

    dossier_id: int
    history_id: int
    status: str
    previous: str | None
    step: str | None
    at: datetime
    recorded_at: datetime

    @property
    def is_intake(self) -> bool:
        return self.previous is None


@dataclass(frozen=True, kw_only=True)
class RatingGiven(DomainEvent):
    """The applicant rated the service of a returned dossier (``rating_id``: the stored rating)."""

    rating_id: int


@dataclass(frozen=True, kw_only=True)
class QuestionAnswered(DomainEvent):
    """An agency answered a citizen's question (not about a dossier: ``dossier_code`` is empty)."""

    question_id: int
    dossier_code: str = ""
