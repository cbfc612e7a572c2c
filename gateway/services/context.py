"""What the use cases need from the running gateway, given explicitly: database, bus, calendar, verifier, limits.

The composition root builds one :class:`Context` per process; tests build one over a temporary database with a
quiet bus or in-memory fakes. Use cases never reach for globals or for the daemon's runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from gateway.bus import MessageBus
from gateway.domain.calendar import OfficeCalendar
from gateway.store.database import Database
from gateway.store.models import Dossier

if TYPE_CHECKING:  # the verifier's module loads pyHanko: commands that verify nothing do without it
    from signing import Verifier

__all__ = ["DEFAULT_MAX_FILE_BYTES", "Context", "Render"]

#: One component's decoded size.
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024


class Render(Protocol):
    """Renders a dossier as the caller's answer (the edge's read model), in the unit of work that changed it.

    ``created``: the dossier was created in this unit of work, so that only rows this unit of work added can refer to
    it (the read model need not look in the database for kinds of rows it added none of).
    """

    def __call__(
        self, session: Session, dossier: Dossier, now: datetime, /, *, created: bool = False
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Context:
    db: Database
    bus: MessageBus
    calendar: OfficeCalendar
    verifier: Verifier
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    #: ``[signing] signer_must_match_applicant``: "warn" or "require".
    signer_must_match_applicant: str = "warn"
