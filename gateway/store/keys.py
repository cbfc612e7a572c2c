"""Keys the gateway draws for itself when the configuration names none, kept in the database (``gateway_keys``).

:func:`shared_key` returns the key of a name, drawing it on first use: two processes asking at once both get the one
that was stored first (an insert that does nothing on conflict, then a read), so every process sharing the database,
and every restart, uses the same key.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway.store.models import GatewayKey, utcnow

__all__ = ["shared_key"]


def shared_key(session: Session, name: str) -> str:
    """The key called ``name`` (URL-safe text of 256 random bits), drawn and stored by the first process to ask."""
    found = session.scalar(select(GatewayKey.value).where(GatewayKey.name == name))
    if found is not None:
        return found
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = {"name": name, "value": secrets.token_urlsafe(32), "created_at": utcnow()}
    session.execute(insert(GatewayKey).values(**values).on_conflict_do_nothing(index_elements=["name"]))
    return session.scalars(select(GatewayKey.value).where(GatewayKey.name == name)).one()
