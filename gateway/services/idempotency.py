"""Idempotent requests: an ``Idempotency-Key`` answered once, its answer stored with the change it made.

The key is scoped to the principal; the request's fingerprint is the sha256 of the method, path and canonical JSON
of the body. The first successful answer (status and body) is stored in the same transaction as the change, as its last
statement; a repeat with the same fingerprint gets it back and changes nothing; the same key with another request is
refused (as the IETF ``Idempotency-Key`` draft recommends). Concurrent repeats are settled by the record's primary
key: the loser's transaction is rolled back and it answers with the winner's answer.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, cast

import anyio.to_thread
import pybase64
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import audit
from gateway.auth import Principal
from gateway.bus import MessageBus
from gateway.errors import Invalid, problem
from gateway.services.changes import find_dossier
from gateway.services.context import Context, Render
from gateway.store.database import Database
from gateway.store.models import Dossier, IdempotencyRecord
from gateway.unit_of_work import UnitOfWork

__all__ = [
    "Answer",
    "DossierRequest",
    "IdempotencyContext",
    "answered_before",
    "canonical_json",
    "change_dossier",
    "hash_canonical_json",
    "run_idempotent",
]


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
#: Strings this long or longer (files' base64, mostly) are hashed as they are when JSON escapes nothing in them.
_LONG = 4096
#: What JSON escapes in an ASCII string.
_ESCAPED = bytes(range(0x20)) + b'"\\'


def hash_canonical_json(digest: Any, document: Any) -> None:
    """Feed ``digest`` (a ``hashlib`` object) the bytes of :func:`canonical_json` of ``document``, without building
    them whole: a long ASCII string that needs no escape is hashed as it is, between its quotes (a 1 MB file's base64
    costs one pass instead of an encoding, a copy and a pass)."""
    kind = type(document)
    if kind is dict and all(type(key) is str for key in document):
        digest.update(b"{")
        for index, key in enumerate(sorted(document)):
            if index:
                digest.update(b",")
            digest.update(_encode(key).encode("utf-8") + b":")
            hash_canonical_json(digest, document[key])
        digest.update(b"}")
    elif kind is list:
        digest.update(b"[")
        for index, item in enumerate(document):
            if index:
                digest.update(b",")
            hash_canonical_json(digest, item)
        digest.update(b"]")
    elif kind is str and len(document) >= _LONG and document.isascii():
        raw = document.encode("ascii")
        if _needs_no_escape(raw):
            digest.update(b'"')
            digest.update(raw)
            digest.update(b'"')
        else:
            digest.update(_encode(document).encode("utf-8"))
    else:
        digest.update(_encode(document).encode("utf-8"))


def _needs_no_escape(raw: bytes) -> bool:
    """Whether JSON escapes nothing in the ASCII ``raw``. Strict base64 (a file's content, whose alphabet needs no
    escape) is recognised by a SIMD decode, a tenth of the time of looking for the escaped bytes one by one."""
    try:
        pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return len(raw.translate(None, _ESCAPED)) == len(raw)
    return True


_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}\Z")
_RECORDS = cast(Table, IdempotencyRecord.__table__)
#: The stored answer of one key (a plain statement, built once: the answer is read, never changed).
_LOOKUP = select(_RECORDS.c.request_sha256, _RECORDS.c.status_code, _RECORDS.c.body).where(
    _RECORDS.c.principal == bindparam("principal"), _RECORDS.c.key == bindparam("key")
)
#: A key's answer stored (a plain statement, built once: the record is written, never read back in the transaction).
_RECORD = insert(_RECORDS)


@dataclass(frozen=True)
class IdempotencyContext:
    """An ``Idempotency-Key`` of one principal and the fingerprint of the request it came with."""

    principal: str
    key: str
    fingerprint: str

    @classmethod
    def of(
        cls, principal: Principal, key: str | None, method: str, path: str, document: Any, *, large: bool = True
    ) -> IdempotencyContext | None:
        """The key's context; the fingerprint of a ``large`` body (one with files) is fed to the hash as it is built,
        a small one's canonical JSON is built whole by the JSON encoder (the same bytes, faster when small)."""
        if key is None:
            return None
        if _KEY_RE.match(key) is None:
            raise Invalid([problem("Idempotency-Key", "must be 1 to 200 visible ASCII characters")])
        digest = hashlib.sha256(f"{method} {path}\n".encode())
        if large:
            hash_canonical_json(digest, document)
        else:
            digest.update(canonical_json(document))
        return cls(principal=principal.name, key=key, fingerprint=digest.hexdigest())

    @classmethod
    async def build(
        cls, principal: Principal, key: str | None, method: str, path: str, document: Any, *, large: bool = True
    ) -> IdempotencyContext | None:
        """:meth:`of`, fingerprinting a ``large`` body off the event loop (a small one on it: the hand-off to a
        thread would cost more than the hash)."""
        if key is None:
            return None
        if not large:
            return cls.of(principal, key, method, path, document, large=False)
        return await anyio.to_thread.run_sync(partial(cls.of, principal, key, method, path, document))

    def lookup(self, session: Session) -> tuple[int, dict[str, Any]] | None:
        """The stored answer for this key; :class:`Invalid` when the key came with another request."""
        record = session.execute(_LOOKUP, {"principal": self.principal, "key": self.key}).first()
        if record is None:
            return None
        if record.request_sha256 != self.fingerprint:
            raise Invalid(
                [problem("Idempotency-Key", "this key was already used with a different request")],
                message="Idempotency-Key reused with a different request body",
            )
        return record.status_code, record.body

    def record(self, session: Session, status: int, body: dict[str, Any]) -> None:
        """Store the answer under the key in this transaction, as its last statement: the unit of work's rows are
        flushed first (a concurrent claim of the same key waits, then fails with :class:`IntegrityError`)."""
        session.flush()
        values = {"principal": self.principal, "key": self.key, "request_sha256": self.fingerprint}
        session.execute(_RECORD, {**values, "status_code": status, "body": body})


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


async def answered_before(db: Database, context: IdempotencyContext | None) -> Answer | None:
    """The stored answer to a repeated key, looked up before any work (checks and files) is done."""
    if context is None:
        return None
    earlier = await db.run(context.lookup, short=True)
    return None if earlier is None else Answer(earlier[0], earlier[1], replayed=True)


async def run_idempotent(
    db: Database,
    bus: MessageBus,
    context: IdempotencyContext | None,
    work: Callable[[UnitOfWork], tuple[int, dict[str, Any]]],
    *,
    short: bool = False,
) -> Answer:
    """Run ``work`` in one unit of work, recording its answer under ``context``'s key (see the module's notes).
    ``short``: a few statements about one dossier and no file (:meth:`Database.write`).

    One transaction: the key is looked up first (a repeat answers what the first request did, and changes nothing),
    then ``work`` runs and its answer is stored under the key last. Two concurrent first requests with one key both
    do the work; the second one's record collides with the first one's, its transaction is rolled back, and it
    answers with the first one's answer.
    """

    def run(session: Session) -> Answer:
        audit.lock_for_write(session)
        if context is not None:
            earlier = context.lookup(session)
            if earlier is not None:
                return Answer(earlier[0], earlier[1], replayed=True)
        uow = UnitOfWork(session, bus)
        status, body = work(uow)
        uow.publish()
        if context is not None:
            context.record(session, status, body)
        return Answer(status, body)

    try:
        return await db.write(run, short=short)
    except IntegrityError:
        if context is None:
            raise
        earlier = await db.run(context.lookup)
        if earlier is None:
            raise
        return Answer(earlier[0], earlier[1], replayed=True)


@dataclass(frozen=True)
class DossierRequest:
    """A portal's request about one dossier (``POST /api/v1/dossiers/{code}/…``): who, what, and how to answer."""

    principal: Principal
    code: str
    document: Any
    idempotency_key: str | None
    now: datetime
    render: Render
    path: str

    async def idempotency(self) -> IdempotencyContext | None:
        return await IdempotencyContext.build(self.principal, self.idempotency_key, "POST", self.path, self.document)


async def change_dossier(
    ctx: Context,
    context: IdempotencyContext | None,
    request: DossierRequest,
    change: Callable[[UnitOfWork, Dossier], None],
    *,
    short: bool = False,
) -> Answer:
    """``change`` applied to the request's dossier (locked) in one idempotent unit of work; the answer is ``200``
    and the rendered dossier, the flows' follow-ups included (``short``: see :func:`run_idempotent`)."""

    def work(uow: UnitOfWork) -> tuple[int, dict[str, Any]]:
        dossier = find_dossier(uow.session, request.code, for_update=True)
        change(uow, dossier)
        uow.publish()
        return 200, request.render(uow.session, dossier, request.now)

    return await run_idempotent(ctx.db, ctx.bus, context, work, short=short)
