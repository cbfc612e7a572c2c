"""What the use cases need from the running gateway, given explicitly: database, bus, calendar, verifier, limits.

The composition root builds one :class:`Context` per process; tests build one over a temporary database with a
quiet bus or in-memory fakes. Use cases never reach for globals or for the daemon's runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from gateway.bus import MessageBus
from gateway.domain.calendar import OfficeCalendar
from gateway.store.database import Database
from gateway.store.models import Dossier
from signing import Verifier

__all__ = ["DEFAULT_MAX_FILE_BYTES", "Context", "Render"]

#: One component's decoded size.
DEFAULT_MAX_FILE_BYTES = 20 * 1024 * 1024

#: Renders a dossier as the caller's answer (the edge's read model), in the unit of work that changed it.
Render = Callable[[Session, Dossier, datetime], dict[str, Any]]


@dataclass(frozen=True)
class Context:
    db: Database
    bus: MessageBus
    calendar: OfficeCalendar
    verifier: Verifier
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    #: ``[signing] signer_must_match_applicant``: "warn" or "require".
    signer_must_match_applicant: str = "warn"
