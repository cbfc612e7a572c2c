"""Client of the reference REST contract an agency one-stop system implements (``docs/agency-rest-contract.md``).

::

    POST {endpoint}/dossiers                      deliver a dossier (header Idempotency-Key)
    GET  {endpoint}/dossiers/{code}               its status
    POST {endpoint}/dossiers/{code}/supplements   components added after a supplement request (Idempotency-Key)
    POST {endpoint}/dossiers/{code}/withdraw      the applicant withdrew (Idempotency-Key)
    POST {endpoint}/dossiers/{code}/payments      the applicant paid the fees asked for (Idempotency-Key)
    POST {endpoint}/questions                     a citizen's question to answer (Idempotency-Key)

An agency whose system differs registers a ``mapping``: other paths per operation, other top-level field names
(renamed both ways), other status values::

    {"paths": {"deliver": "/hoso", "status": "/hoso/{code}"},
     "fields": {"code": "MaHoSo", "status": "TrangThai"},
     "statuses": {"2": "received", "4": "processing"}}
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from types import MappingProxyType, TracebackType
from typing import Any

import httpx

from adapters import jsonbody
from adapters.errors import BadResponseError
from adapters.http import ClientFactory, default_factory, json_body, map_http_errors, raise_for_status
from adapters.http import settings_from_document as _settings_from_document
from adapters.onestop.port import Acknowledgement, AgencyStatus, DeliveryReceipt

__all__ = ["DEFAULT_PATHS", "OPERATIONS", "RestMapping", "RestOneStopClient"]

logger = logging.getLogger(__name__)

OPERATIONS = ("deliver", "status", "supplement", "withdraw", "fee_paid", "question")
DEFAULT_PATHS: Mapping[str, str] = MappingProxyType(
    {
        "deliver": "/dossiers",
        "status": "/dossiers/{code}",
        "supplement": "/dossiers/{code}/supplements",
        "withdraw": "/dossiers/{code}/withdraw",
        "fee_paid": "/dossiers/{code}/payments",
        "question": "/questions",
    }
)
#: Vietnam's time (no daylight saving): timestamps an agency sends without an offset are read in it.
AGENCY_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
_MAPPING_KEYS = frozenset({"paths", "fields", "statuses"})


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ValueError(f"mapping.{name} must map names to non-empty strings")
    return dict(value)


@dataclass(frozen=True)
class RestMapping:
    """An agency's differences from the reference contract: paths, field names (ours → theirs), status values."""

    paths: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PATHS))
    fields: Mapping[str, str] = field(default_factory=dict)
    statuses: Mapping[str, str] = field(default_factory=dict)  # theirs → ours

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | None) -> RestMapping:
        """Validate a registration document's ``mapping`` (``ValueError`` with a clear message when invalid)."""
        if not mapping:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ValueError("mapping must be an object")
        unknown = set(mapping) - _MAPPING_KEYS
        if unknown:
            raise ValueError(f"mapping: unknown keys {sorted(unknown)} (allowed: {sorted(_MAPPING_KEYS)})")
        paths = _string_map(mapping.get("paths"), "paths")
        for operation, template in paths.items():
            if operation not in OPERATIONS:
                raise ValueError(f"mapping.paths: unknown operation {operation!r} (allowed: {', '.join(OPERATIONS)})")
            if not template.startswith("/") or any(c in template for c in "?#") or "//" in template:
                raise ValueError(f"mapping.paths.{operation} must be a path starting with '/'")
            needs_code = operation not in ("deliver", "question")
            if template.replace("{code}", "").count("{") or template.replace("{code}", "").count("}"):
                raise ValueError(f"mapping.paths.{operation}: only the {{code}} placeholder is allowed")
            if needs_code and "{code}" not in template:
                raise ValueError(f"mapping.paths.{operation} must contain {{code}}")
        fields = _string_map(mapping.get("fields"), "fields")
        if len(set(fields.values())) != len(fields):
            raise ValueError("mapping.fields: two fields are mapped to the same name")
        statuses = _string_map(mapping.get("statuses"), "statuses")
        return cls(paths={**DEFAULT_PATHS, **paths}, fields=fields, statuses=statuses)

    def path(self, operation: str, code: str | None = None) -> str:
        template = self.paths[operation]
        if code is None:
            return template
        return template.replace("{code}", urllib.parse.quote(code, safe=""))

    def outbound(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with our top-level field names replaced by the agency's."""
        renamed = {key: value for key, value in body.items() if key not in self.fields}
        renamed.update({self.fields[key]: value for key, value in body.items() if key in self.fields})
        return renamed

    def inbound(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` with the agency's top-level field names replaced by ours."""
        reverse = {theirs: ours for ours, theirs in self.fields.items()}
        renamed = {key: value for key, value in body.items() if key not in reverse}
        renamed.update({reverse[key]: value for key, value in body.items() if key in reverse})
        return renamed

    def status(self, value: Any) -> str | None:
        """Our status name for the agency's status value."""
        if value is None:
            return None
        text = str(value)
        return self.statuses.get(text, text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} values cannot be sent as JSON")


def _checked_code(code: Any) -> str:
    if not isinstance(code, str) or not code.strip() or any(ord(c) < 32 for c in code):
        raise ValueError("the dossier code must be a non-empty string")
    return code


def _checked_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > 255 or not key.isascii() or not key.isprintable():
        raise ValueError("the idempotency key must be 1-255 printable ASCII characters")
    return key


class RestOneStopClient:
    """An agency one-stop system speaking the reference REST contract (or a mapped variant of it).

    ``client`` comes from :meth:`adapters.http.ClientFactory.client` with the agency's endpoint as ``base_url``;
    it is not closed by this object unless it was made by :meth:`from_document`.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        agency_code: str,
        mapping: Mapping[str, Any] | None = None,
        upstream: str | None = None,
    ) -> None:
        self._client = client
        self.agency_code = agency_code
        self.mapping = RestMapping.parse(mapping)
        self.upstream = upstream or f"agency:{agency_code}"
        self._owns_client = False
        # The operations whose path names no dossier, as whole URLs: httpx then parses no URL per request.
        self._urls = {
            operation: client.build_request("POST", self.mapping.path(operation)).url
            for operation in ("deliver", "question")
        }

    @classmethod
    def from_document(
        cls,
        document: Mapping[str, Any],
        *,
        resolve_secret: Callable[[str], str],
        factory: ClientFactory | None = None,
        **settings: Any,
    ) -> RestOneStopClient:
        """A client (owning its ``httpx.AsyncClient``) for an agency registration document with protocol ``rest``.

        ``settings`` are further :class:`~adapters.http.ClientSettings` fields (``address_policy``, timeouts...).
        """
        if document.get("protocol", "rest") != "rest":
            raise ValueError("the registration document's protocol is not 'rest'")
        code = _checked_code(document.get("code"))
        client_settings, auth = _settings_from_document(document, resolve_secret, **settings)
        upstream = f"agency:{code}"
        mapping = document.get("mapping")
        RestMapping.parse(mapping)  # validated before a client exists: nothing to close on error
        http_client = (factory or default_factory).client(upstream, client_settings, auth=auth)
        instance = cls(http_client, agency_code=code, mapping=mapping, upstream=upstream)
        instance._owns_client = True
        return instance

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> RestOneStopClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- operations ----------------------------------------------------------------------------------------------------

    async def deliver(self, dossier: Mapping[str, Any], idempotency_key: str) -> DeliveryReceipt:
        """``POST /dossiers``: 2xx is acceptance, and so is 409 (the agency already has the dossier)."""
        code = _checked_code(dossier.get("code"))
        response = await self._send("POST", self._urls["deliver"], dossier, idempotency_key)
        if response.status_code == 409:
            body = self._lenient_object(response)
            duplicate = True
        else:
            raise_for_status(response, self.upstream)
            body = self._object(response, allow_empty=True)
            duplicate = _replayed(response)
        logger.info("Dossier %s delivered to %s (HTTP %s)", code, self.upstream, response.status_code)
        reference = body.get("reference")
        return DeliveryReceipt(
            dossier_code=code,
            duplicate=duplicate,
            agency_reference=str(reference) if reference not in (None, "") else None,
            status=self.mapping.status(body.get("status")),
            received_at=self._timestamp(body, "received_at"),
            status_code=response.status_code,
            body=body,
        )

    async def get_status(self, code: str) -> AgencyStatus:
        """``GET /dossiers/{code}``."""
        code = _checked_code(code)
        response = await self._send("GET", self.mapping.path("status", code))
        raise_for_status(response, self.upstream)
        body = self._object(response)
        answered = body.get("code")
        if answered is not None and str(answered) != code:
            raise BadResponseError("the status answer is about another dossier", upstream=self.upstream)
        status = self.mapping.status(body.get("status"))
        if not status:
            raise BadResponseError("the status answer has no status", upstream=self.upstream)
        transfer_to = body.get("transfer_to")
        return AgencyStatus(
            dossier_code=code,
            status=status,
            at=self._timestamp(body, "at"),
            note=_optional_text(body.get("note")),
            reason=_optional_text(body.get("reason")),
            due_at=self._timestamp(body, "due_at"),
            transfer_to=str(transfer_to) if transfer_to not in (None, "") else None,
            result=body.get("result"),
            body=body,
        )

    async def supplement(
        self, code: str, components: Sequence[Mapping[str, Any]], idempotency_key: str
    ) -> Acknowledgement:
        """``POST /dossiers/{code}/supplements`` with ``{"components": [...]}``."""
        code = _checked_code(code)
        payload = {"components": list(components)}
        response = await self._send("POST", self.mapping.path("supplement", code), payload, idempotency_key)
        return self._acknowledgement(code, response)

    async def withdraw(self, code: str, reason: str, idempotency_key: str) -> Acknowledgement:
        """``POST /dossiers/{code}/withdraw`` with ``{"reason": "..."}``."""
        code = _checked_code(code)
        response = await self._send("POST", self.mapping.path("withdraw", code), {"reason": reason}, idempotency_key)
        return self._acknowledgement(code, response)

    async def fee_paid(self, code: str, payment: Mapping[str, Any], idempotency_key: str) -> Acknowledgement:
        """``POST /dossiers/{code}/payments`` with the payment (``reference``, ``amount`` in VND, ``currency``,
        ``paid_at``, ``transaction_no``, ``fees``): the applicant paid the fees the agency asked for."""
        code = _checked_code(code)
        response = await self._send("POST", self.mapping.path("fee_paid", code), payment, idempotency_key)
        return self._acknowledgement(code, response)

    async def send_question(self, question: Mapping[str, Any], idempotency_key: str) -> Acknowledgement:
        """``POST /questions`` with the question (``id``, ``agency_code``, ``procedure_code``, ``question``,
        ``asked_at``, ``answer_by``, ``answer_path``): a citizen's question for the agency to answer."""
        response = await self._send("POST", self._urls["question"], question, idempotency_key)
        return self._acknowledgement(str(question.get("id", "")), response)

    # -- plumbing ------------------------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str | httpx.URL,
        payload: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        content = None
        if idempotency_key is not None:
            headers["Idempotency-Key"] = _checked_key(idempotency_key)
        if payload is not None:
            body = self.mapping.outbound(payload)
            content = jsonbody.encode(body, default=_json_default)
            headers["Content-Type"] = "application/json"
        with map_http_errors(self.upstream):
            return await self._client.request(method, path, content=content, headers=headers)

    def _acknowledgement(self, code: str, response: httpx.Response) -> Acknowledgement:
        raise_for_status(response, self.upstream)
        body = self._object(response, allow_empty=True)
        return Acknowledgement(
            dossier_code=code,
            duplicate=_replayed(response),
            status=self.mapping.status(body.get("status")),
            status_code=response.status_code,
            body=body,
        )

    def _object(self, response: httpx.Response, *, allow_empty: bool = False) -> dict[str, Any]:
        """The JSON object a 2xx response carries, with field names mapped back to ours."""
        value = json_body(response, self.upstream, allow_empty=allow_empty)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise BadResponseError("expected a JSON object", upstream=self.upstream)
        return self.mapping.inbound(value)

    def _lenient_object(self, response: httpx.Response) -> dict[str, Any]:
        """Like :meth:`_object`, but any body is fine (a 409's body is informative only)."""
        try:
            return self._object(response, allow_empty=True)
        except BadResponseError:
            return {}

    def _timestamp(self, body: Mapping[str, Any], name: str) -> datetime | None:
        value = body.get(name)
        if value in (None, ""):
            return None
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise BadResponseError(f"{name} is not an ISO 8601 timestamp", upstream=self.upstream) from exc
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=AGENCY_TIME)


def _replayed(response: httpx.Response) -> bool:
    return response.headers.get("Idempotent-Replayed", "").strip().lower() == "true"


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
