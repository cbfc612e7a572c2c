"""Satisfaction ratings: the applicant rates a returned dossier once; the rating is stored, audited, and raised as
:class:`~gateway.domain.events.RatingGiven` for the national portal's flow.

Refusals: a dossier not yet ``returned`` is 409 ``not_returned``, a second rating 409 ``already_rated``, an unknown
criterion or a score outside 1..5 is 422. The comment is the applicant's own words: it is never logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import audit
from gateway.auth import Principal
from gateway.domain import ratings
from gateway.domain.events import RatingGiven
from gateway.domain.status import Status
from gateway.domain.times import iso
from gateway.errors import Conflict, Invalid, problem
from gateway.services.changes import find_dossier
from gateway.services.context import Context
from gateway.store.models import Dossier, Rating
from gateway.unit_of_work import UnitOfWork, in_unit
from gateway.validation import parse_model

__all__ = ["AlreadyRated", "NotReturned", "RatingRequest", "rate", "rating_of", "rating_view"]


class NotReturned(Conflict):
    """Only a dossier whose result was handed over may be rated."""

    code = "not_returned"


class AlreadyRated(Conflict):
    """A dossier is rated once."""

    code = "already_rated"


class RatingRequest(BaseModel):
    """``POST /api/v1/dossiers/{code}/ratings``: a score from 1 to 5 per criterion (``access``, ``procedure``,
    ``staff``, ``timeliness``, ``result``; at least one) and an optional comment."""

    model_config = ConfigDict(extra="forbid")

    scores: dict[StrictStr, StrictInt] = Field(
        description="criterion → score 1 (very unsatisfied) to 5 (very satisfied)",
        examples=[{"access": 5, "procedure": 4, "staff": 5, "timeliness": 4, "result": 5}],
    )
    comment: Annotated[StrictStr, Field(max_length=2000)] | None = None


def rating_view(rating: Rating) -> dict[str, Any]:
    """A rating as the API shows it (in the dossier view too)."""
    scores = {key: int(value) for key, value in (rating.scores or {}).items()}
    return {
        "dossier_code": rating.dossier_code,
        "scores": scores,
        "criteria": {key: ratings.CRITERIA.get(key, key) for key in scores},
        "average": ratings.average(scores) if scores else None,
        "comment": rating.comment,
        "rated_at": iso(rating.rated_at),
        "synced_at": iso(rating.synced_at),
    }


def rating_of(session: Session, dossier: Dossier) -> Rating | None:
    return session.scalars(select(Rating).where(Rating.dossier_id == dossier.id)).one_or_none()


def _check(body: RatingRequest) -> None:
    found = ratings.problems(body.scores)
    if found:
        raise Invalid([problem(f"scores.{key}" if key else "scores", message) for key, message in found])


def _rate(code: str, body: RatingRequest, actor: Principal, now: datetime, uow: UnitOfWork) -> dict[str, Any]:
    session = uow.session
    dossier = find_dossier(session, code, for_update=True)
    if dossier.status != Status.RETURNED.value:
        raise NotReturned(f"dossier {code} is {dossier.status}: a rating is taken after the result is returned")
    if rating_of(session, dossier) is not None:
        raise AlreadyRated(f"dossier {code} is already rated")
    rating = Rating(
        dossier_id=dossier.id,
        dossier_code=dossier.code,
        agency_code=dossier.lead_agency_code,
        procedure_code=dossier.procedure_code,
        scores=dict(body.scores),
        comment=body.comment,
        rated_at=now,
        actor=actor.name,
    )
    session.add(rating)
    session.flush()
    details = {"criteria": sorted(body.scores), "average": ratings.average(body.scores)}
    audit.append(session, actor.name, "dossier.rated", code, details, at=now)
    uow.emit(RatingGiven(dossier_code=code, rating_id=rating.id))
    return rating_view(rating)


async def rate(ctx: Context, actor: Principal, code: str, document: Any, *, now: datetime) -> dict[str, Any]:
    """Validate and store the rating of dossier ``code`` in one unit of work; the rating as the API shows it."""
    body = parse_model(RatingRequest, document)
    _check(body)
    try:
        return await in_unit(ctx.db, ctx.bus, lambda uow: _rate(code, body, actor, now, uow), short=True)
    except IntegrityError:  # a concurrent rating of the same dossier committed first
        raise AlreadyRated(f"dossier {code} is already rated") from None
