"""Delivering ``national.rating`` messages: an applicant's satisfaction rating sent to the national portal
(``DanhGiaHaiLongMC``).

The reaction (:func:`gateway.flows.national.reactions.enqueue_rating`) queues the message; the handler reads the
rating when it delivers and records when the portal accepted it (``ratings.synced_at``).
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from sqlalchemy.orm import Session

from adapters.errors import PermanentError, TransientError
from adapters.national_portal import NationalPortal, RatingRecord, wire
from gateway import messages
from gateway.services.context import Context
from gateway.store.models import Rating
from gateway.workers import MessageView

__all__ = ["deliver_rating", "rating_record"]

log = logging.getLogger("gateway.national_sync")

UPSTREAM = messages.NATIONAL_TARGET


def rating_record(session: Session, rating_id: int) -> RatingRecord:
    """The portal's record of rating ``rating_id``; :class:`PermanentError` when it is gone or cannot be sent."""
    rating = session.get(Rating, rating_id)
    if rating is None:
        raise PermanentError(f"no rating {rating_id}", upstream=UPSTREAM)
    try:
        return RatingRecord(
            dossier_code=rating.dossier_code,
            procedure_code=rating.procedure_code,
            agency_code=rating.agency_code,
            rated_at=rating.rated_at,
            scores={key: int(value) for key, value in (rating.scores or {}).items()},
            comment=rating.comment,
        )
    except ValueError as exc:
        raise PermanentError(f"rating {rating_id} cannot be sent: {exc}", upstream=UPSTREAM) from None


def _synced(rating_id: int, at: datetime, session: Session) -> None:
    rating = session.get(Rating, rating_id)
    if rating is not None:
        rating.synced_at = at


async def deliver_rating(ctx: Context, portal: NationalPortal, message: MessageView, now: datetime) -> None:
    """Send one ``national.rating`` message; a refusal the portal may take back later (not stored, dossier not there
    yet) is transient, any other refusal permanent."""
    rating_id, code = message.payload.get("rating_id"), message.payload.get("dossier_code")
    if isinstance(rating_id, bool) or not isinstance(rating_id, int):
        raise PermanentError("the message names no rating", upstream=UPSTREAM)
    record = await ctx.db.run(functools.partial(rating_record, rating_id=rating_id))
    result = await portal.send_ratings([record])
    if result.failed:
        failure = result.failed[0]
        text = f"{wire.SERVICE_RATING}: refused (error_code {failure.code}: {failure.message})"
        retry = failure.code in (wire.CODE_SYSTEM_ERROR, wire.CODE_NOT_FOUND)
        raise (TransientError if retry else PermanentError)(text, upstream=UPSTREAM)
    await ctx.db.run(functools.partial(_synced, rating_id, now))
    log.info("rating synced to the national portal", extra={"dossier_code": code})
