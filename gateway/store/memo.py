"""What a transaction has read and may read again.

A few facts are read by nearly every unit of work and change only by writes the gateway makes itself: a catalogue
entry, whether an agency is registered. :func:`memo` gives the dict in which the functions that read them keep them
for the rest of the transaction, each under a key of its own, and the functions that change them take them out.

A unit of work's session has its own memo. The units of work of a write group
(:mod:`~gateway.store.write_groups`) share one, since they share one transaction: while it holds SQLite's write lock
no other connection can change what was read. When one of them is rolled back, the memo is emptied, since it may hold
what that unit of work changed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

#: ``Session.info`` key of the memo.
MEMO = "transaction_memo"


def memo(session: Session) -> dict[str, Any]:
    """The memo of ``session``'s transaction (see the module's notes)."""
    found: dict[str, Any] = session.info.setdefault(MEMO, {})
    return found
