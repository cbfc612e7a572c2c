"""Citizens' channels: the satisfaction rating of a returned dossier, and questions to the competent agency."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .base import Answer

__all__ = ["AgencyQuestion", "AgencyQuestionList", "QuestionView", "RatingView"]


class RatingView(Answer):
    """The applicant's rating of a returned dossier (also the dossier view's ``rating``)."""

    dossier_code: str
    scores: dict[str, int] = Field(
        description="criterion (access, procedure, staff, timeliness, result) → score 1 to 5",
        examples=[{"access": 5, "staff": 4}],
    )
    criteria: dict[str, str] = Field(description="the Vietnamese label of each criterion scored")
    average: float | None = Field(description="the mean of the scores, two decimals")
    comment: str | None
    rated_at: datetime
    synced_at: datetime | None = Field(description="when the national portal accepted it (none: not yet, or off)")


class AgencyQuestion(Answer):
    """A citizen's question as its agency receives it (no contact details)."""

    id: int
    agency_code: str
    procedure_code: str | None
    question: str
    reply_channel: str = Field(description="portal, email, sms or post: how the portal relays the answer")
    asked_at: datetime
    answer_by: datetime = Field(description="the answer is due by then ([questions] answer_within_days)")
    answer: str | None
    answered_by: str | None
    answered_at: datetime | None
    answer_path: str = Field(description="where the agency posts its answer")


class QuestionView(AgencyQuestion):
    """A citizen's question as the portal sees it."""

    contact: dict[str, Any] | None = Field(description="the asker's contact details, as given")
    route: str = Field(description="rest: posted to the agency's system; poll: the agency fetches it")
    overdue: bool = Field(description="unanswered and past answer_by")


class AgencyQuestionList(Answer):
    """An agency's questions, oldest first."""

    questions: list[AgencyQuestion]
