"""Client of the national public-service portal: session login, dossier sync, progress updates, catalogue pull.

The wire shape (paths, field names, codes, time format) is :mod:`adapters.national_portal.wire`'s; this module is
the behaviour around it:

* one session at a time, obtained on first use, cached, and refreshed when the portal answers that it is invalid or
  expired (or with HTTP 401): the call is then retried once with the new session; concurrent calls share a login;
* records go in batches of ``batch_size``; the :class:`BatchResult` lists accepted and refused records (with the
  portal's code and message), so the caller retries only the refused ones;
* a dossier sent as new (``updating=False``) that the portal already has is sent again as an update, and an update
  of a dossier the portal does not have is sent again as new: repeating a sync is therefore safe;
* failures are :mod:`adapters.errors`: transport errors, 5xx and the portal's system error are transient; refused
  credentials or unit are :class:`~adapters.errors.AuthError`; unreadable answers
  :class:`~adapters.errors.BadResponseError`. A failure stops the call: batches already sent were accepted or
  refused as the portal said, and sending them again is safe (see above).

Nothing here retries a transient failure: the caller's outbox does, with its backoff. The password and session
token are never logged nor shown in a ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx

from adapters import jsonbody
from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError
from adapters.http import SecretSource, json_body, map_http_errors, raise_for_status
from adapters.national_portal import wire
from adapters.national_portal.wire import DossierRecord, ProgressRecord, RatingRecord

__all__ = ["BatchResult", "NationalPortalClient", "RecordFailure"]

logger = logging.getLogger(__name__)


class _WireRecord(Protocol):
    def to_wire(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=_WireRecord)
T = TypeVar("T")


@dataclass(frozen=True)
class RecordFailure(Generic[R]):
    """A record the portal refused, with its error code and message."""

    record: R
    code: str
    message: str


@dataclass
class BatchResult(Generic[R]):
    """What became of the records of one call: accepted, refused (retry only those), and the HTTP calls made."""

    accepted: list[R] = field(default_factory=list)
    failed: list[RecordFailure[R]] = field(default_factory=list)
    calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed_records(self) -> list[R]:
        return [failure.record for failure in self.failed]


def _reveal(secret: SecretSource) -> str:
    return secret() if callable(secret) else secret


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class NationalPortalClient:
    """The national portal, reached through ``client`` (from :meth:`adapters.http.ClientFactory.client`, its
    ``base_url`` the portal's integration address); ``client`` is not closed by this object.

    :param username: the province's integration account.
    :param password: its password, or a callable returning it when a login needs it.
    :param dstcode: the province's code, sent in the ``dstcode`` header.
    :param madonvi: the unit code the calls are made for.
    :param batch_size: records per call (10 by default, as the portal advises).
    :param paths: overrides of :data:`adapters.national_portal.wire.DEFAULT_PATHS`.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        username: str,
        password: SecretSource,
        dstcode: str,
        madonvi: str,
        batch_size: int = 10,
        paths: Mapping[str, str] | None = None,
        upstream: str = "national_portal",
    ) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer")
        for name, value in (("username", username), ("dstcode", dstcode), ("madonvi", madonvi)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} is required")
        unknown = set(paths or {}) - set(wire.DEFAULT_PATHS)
        if unknown:
            raise ValueError(f"unknown paths: {sorted(unknown)} (known: {sorted(wire.DEFAULT_PATHS)})")
        self._client = client
        self.username = username
        self._password = password
        self.dstcode = dstcode
        self.madonvi = madonvi
        self.batch_size = batch_size
        self.paths: dict[str, str] = {**wire.DEFAULT_PATHS, **(paths or {})}
        self.upstream = upstream
        self._session: str | None = None
        self._lock = asyncio.Lock()
        self.login_count = 0  # logins made (observability and tests)

    def __repr__(self) -> str:
        return (
            f"NationalPortalClient(username={self.username!r}, password=***, dstcode={self.dstcode!r}, "
            f"madonvi={self.madonvi!r}, batch_size={self.batch_size}, session={'***' if self._session else None})"
        )

    # -- operations ----------------------------------------------------------------------------------------------------

    async def login(self) -> None:
        """Log in now (a new session replaces the cached one)."""
        async with self._lock:
            self._session = await self._login()

    def invalidate_session(self) -> None:
        """Forget the cached session: the next call logs in again."""
        self._session = None

    async def sync_dossiers(self, records: Iterable[DossierRecord], *, updating: bool) -> BatchResult[DossierRecord]:
        """``DongBoHoSoMC``: send dossiers, new (``updating=False``) or already known to the portal (``True``).

        Records the portal refuses because it already has them (as new) or does not have them (as updates) are
        sent once more the other way.
        """
        items = self._checked(records, DossierRecord)
        result = await self._send_all(wire.SERVICE_SYNC, items, updating=updating)
        switch_code = wire.CODE_NOT_FOUND if updating else wire.CODE_ALREADY_EXISTS
        switched = [failure for failure in result.failed if failure.code == switch_code]
        if switched:
            logger.info(
                "National portal: %d dossier(s) sent again with isUpdating=%s", len(switched), str(not updating).lower()
            )
            again = await self._send_all(wire.SERVICE_SYNC, [f.record for f in switched], updating=not updating)
            kept = [failure for failure in result.failed if failure.code != switch_code]
            result = BatchResult(
                accepted=result.accepted + again.accepted, failed=kept + again.failed, calls=result.calls + again.calls
            )
        return result

    async def update_progress(self, records: Iterable[ProgressRecord]) -> BatchResult[ProgressRecord]:
        """``CapNhatTienDoHoSoMC``: send processing steps."""
        items = self._checked(records, ProgressRecord)
        return await self._send_all(wire.SERVICE_PROGRESS, items, updating=False)

    async def send_ratings(self, records: Iterable[RatingRecord]) -> BatchResult[RatingRecord]:
        """``DanhGiaHaiLongMC``: send applicants' satisfaction ratings."""
        items = self._checked(records, RatingRecord)
        return await self._send_all(wire.SERVICE_RATING, items, updating=False)

    async def lookup_dossiers(self, codes: Iterable[str]) -> dict[str, int | None]:
        """``TraCuuHoSoMC``: the ``TrangThaiHoSo`` the portal holds for each dossier code (``None``: it has none).

        Codes go in batches of ``batch_size``; a code the portal answers for with another per-record error is a
        :class:`~adapters.errors.PermanentError` (or transient for its system error), one it does not answer for at
        all a :class:`~adapters.errors.BadResponseError`.
        """
        wanted = list(dict.fromkeys(codes))
        sent_all = [wire.lookup_record(code) for code in wanted]  # checks the codes before anything is sent
        found: dict[str, int | None] = {}
        for sent in _chunks(sent_all, self.batch_size):
            answer = await self._call(wire.SERVICE_LOOKUP, data=sent)
            entries = answer.get("result")
            by_code = {
                wire.record_key(entry): entry
                for entry in (entries if isinstance(entries, list) else [])
                if isinstance(entry, dict) and wire.record_key(entry) is not None
            }
            for record, outcome in zip(sent, wire.record_outcomes(answer, sent), strict=True):
                code = record["MaHoSo"]
                entry = by_code.get(code)
                if outcome is not None:
                    error_code, message = outcome
                    if error_code == wire.CODE_NOT_FOUND:
                        found[code] = None
                        continue
                    error = TransientError if error_code == wire.CODE_SYSTEM_ERROR else PermanentError
                    raise error(f"lookup refused (error_code {error_code}: {message})", upstream=self.upstream)
                status = None if entry is None else wire.lookup_status(entry)
                if status is None:
                    raise BadResponseError("the lookup answer gives no TrangThaiHoSo", upstream=self.upstream)
                found[code] = status
        return found

    async def pull_procedures(self) -> list[dict[str, Any]]:
        """The portal's procedure catalogue (``LayDanhSachTTHC``), entries as the portal gives them."""
        answer = await self._call(wire.SERVICE_PROCEDURES, path=self.paths["share"])
        code = wire.normalize_code(answer.get("error_code"))
        if not wire.is_success(code):
            raise PermanentError(f"catalogue pull refused (error_code {code})", upstream=self.upstream)
        entries = answer.get("result")
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise BadResponseError("the catalogue answer has no list of procedures", upstream=self.upstream)
        return entries

    # -- batches -------------------------------------------------------------------------------------------------------

    @staticmethod
    def _checked(records: Iterable[R], kind: type) -> list[R]:
        items = list(records)
        for item in items:
            if not isinstance(item, kind):
                raise TypeError(f"expected {kind.__name__} records, got {type(item).__name__}")
        return items

    async def _send_all(self, service: str, records: Sequence[R], *, updating: bool) -> BatchResult[R]:
        result: BatchResult[R] = BatchResult()
        for batch in _chunks(records, self.batch_size):
            sent = [record.to_wire() for record in batch]
            answer = await self._call(service, updating=updating, data=sent)
            result.calls += 1
            for record, outcome in zip(batch, wire.record_outcomes(answer, sent), strict=True):
                if outcome is None:
                    result.accepted.append(record)
                else:
                    result.failed.append(RecordFailure(record, *outcome))
        if result.failed:
            codes = sorted({failure.code for failure in result.failed})
            logger.warning(
                "National portal %s: %d accepted, %d refused (codes %s)",
                service,
                len(result.accepted),
                len(result.failed),
                ", ".join(codes),
            )
        else:
            logger.info("National portal %s: %d record(s) accepted in %d call(s)", service, len(records), result.calls)
        return result

    # -- calls and session ---------------------------------------------------------------------------------------------

    async def _current_session(self) -> str:
        async with self._lock:
            if self._session is None:
                self._session = await self._login()
            return self._session

    async def _drop_session(self, used: str) -> None:
        async with self._lock:
            if self._session == used:  # nobody replaced it meanwhile
                self._session = None

    async def _call(
        self,
        service: str,
        *,
        updating: bool | None = None,
        data: Sequence[Mapping[str, Any]] | None = None,
        path: str | None = None,
    ) -> dict[str, Any]:
        """One business call, with one retry on a fresh session when the session was refused."""
        path = path or self.paths["service"]
        for attempt in (1, 2):
            session = await self._current_session()
            body = wire.business_body(session, self.madonvi, service, updating=updating, data=data)
            response = await self._post(path, body)
            if response.status_code == 401:
                refused = "HTTP 401"
            else:
                raise_for_status(response, self.upstream)
                answer = self._object(response)
                code = wire.normalize_code(answer.get("error_code"))
                if not wire.is_session_code(code):
                    self._check_code(code, service)
                    return answer
                refused = f"error_code {code}"
            await self._drop_session(session)
            if attempt == 1:
                logger.info("National portal session refused (%s): logging in again", refused)
        raise AuthError(f"a fresh session was refused too ({refused})", upstream=self.upstream)

    def _check_code(self, code: str | None, service: str) -> None:
        """Raise what a call-level ``error_code`` means; return for success and per-record refusals."""
        if code is None:
            raise BadResponseError("the answer has no error_code", upstream=self.upstream)
        if wire.is_auth_code(code):
            raise AuthError(f"{service} refused: error_code {code} (account or unit)", upstream=self.upstream)
        if code == wire.CODE_SYSTEM_ERROR:
            raise TransientError(f"{service}: the portal reported a system error", upstream=self.upstream)
        if code == wire.CODE_BAD_REQUEST:
            raise PermanentError(f"{service}: the portal refused the call as malformed", upstream=self.upstream)
        # Success, some records refused, or another code: record_outcomes reads the per-record results.

    async def _login(self) -> str:
        """A new session (the caller holds the lock)."""
        body = wire.login_body(self.username, _reveal(self._password))
        response = await self._post(self.paths["login"], body)
        raise_for_status(response, self.upstream)
        answer = self._object(response)
        code = wire.normalize_code(answer.get("error_code"))
        session = answer.get("session")
        if wire.is_success(code):
            if not isinstance(session, str) or not session:
                raise BadResponseError("the login answer has no session", upstream=self.upstream)
            self.login_count += 1
            logger.info("National portal: logged in as %s", self.username)
            return session
        if code == wire.CODE_SYSTEM_ERROR:
            raise TransientError("login: the portal reported a system error", upstream=self.upstream)
        if code is None:
            raise BadResponseError("the login answer has no error_code", upstream=self.upstream)
        raise AuthError(f"login refused (error_code {code})", upstream=self.upstream)

    async def _post(self, path: str, body: Mapping[str, Any]) -> httpx.Response:
        content = jsonbody.encode(body)
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json; charset=utf-8",
            wire.DSTCODE_HEADER: self.dstcode,
        }
        with map_http_errors(self.upstream):
            response = await self._client.post(path, content=content, headers=headers)
        return response

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        value = json_body(response, self.upstream)
        if not isinstance(value, dict):
            raise BadResponseError("expected a JSON object", upstream=self.upstream)
        return value
