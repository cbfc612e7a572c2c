"""The gateway's outbox dispatcher: what each message kind (:mod:`gateway.messages`) does in the world outside.

- ``agency.deliver`` / ``agency.supplement`` / ``agency.withdraw``: the dossier and the agency's registration are
  read from the database when the message is delivered (payloads carry references, not personal data), and the
  agency's one-stop system is called with the message's idempotency key through a client built from its
  registration. ``agency.supplement`` sends the current revision of the components named in the payload (with their
  content), ``agency.withdraw`` the applicant's reason.
- ``portal.webhook``: the payload (``{"dossier_code", "event": {status, at, actor, note}}``, plus the event's
  ``national_status_code``) is POSTed as JSON to ``[portal] webhook_url`` with the message's ``Idempotency-Key``
  and, when ``[portal] token`` is set, ``Authorization: Bearer <token>`` (``timeout_seconds``, default 10).

- ``national.sync``, ``agency.fee_paid``, ``postal.order``: handled by the flow modules
  (:mod:`gateway.national_sync`, :mod:`gateway.fees`, :mod:`gateway.shipments`), each a ``Handler(dispatcher)``
  with ``async handle(message)`` and ``async aclose()``, built when its first message comes.

Clients: one per agency, built through one :class:`~adapters.http.ClientFactory` (the runtime's ``client_factory``
or ``extras["client_factory"]`` when it has one, else the process-wide :data:`adapters.http.default_factory`, where
the daemon's recording and replay wrappers go) and cached; a client is rebuilt when the agency's stored
registration document changes (compared whole), the old one closed once its in-flight calls are done. Connections
follow the registry's address policy: loopback and private addresses only with ``[registry]
allow_private_endpoints``, link-local and metadata addresses never. The portal's webhook URL is the operator's own
configuration, so it may be on the province's private network (link-local and metadata addresses stay refused).

SOAP agencies get a :class:`~adapters.onestop.soap.SoapOneStopClient` built from the registration document
(``SoapOneStopClient.from_document``: the same factory, address policy and cache invalidation; WS-Security
``wsse`` credentials; the fetched WSDL kept in the runtime's ``wsdl_cache_dir`` so a restart with the agency
unreachable still loads it, and parsed once per process per WSDL URL).

Errors are :mod:`adapters.errors`, as the workers expect (:func:`gateway.workers.classify`): a dossier or agency
that does not exist, an unknown message kind, a registration the client cannot be built from or credentials that
cannot be resolved → :class:`~adapters.errors.PermanentError` (dead letter: an operator fixes the cause and
redrives); the adapters' own errors pass through unchanged.

Secrets (``env:NAME`` / ``file:PATH``) are resolved through :func:`gateway.config.resolve_secret` each time a request
needs them, never kept or logged.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.errors import AuthError, PermanentError
from adapters.http import ClientFactory, ClientSettings, bearer, default_factory, map_http_errors, raise_for_status
from adapters.netguard import AddressPolicy
from adapters.onestop.rest import RestOneStopClient
from adapters.onestop.soap import SoapOneStopClient

from . import messages
from .config import ConfigError, resolve_secret
from .domain.status import national_code
from .registry import get_agency
from .store.models import Dossier

if TYPE_CHECKING:
    from .runtime import Runtime
    from .workers import MessageView

__all__ = ["GatewayDispatcher"]

log = logging.getLogger("gateway.dispatch")

PORTAL_UPSTREAM = "portal"

#: The message kinds handled by a flow module (its ``Handler`` class).
FLOW_MODULES = {
    messages.NATIONAL_SYNC: "gateway.national_sync",
    messages.AGENCY_FEE_PAID: "gateway.fees",
    messages.POSTAL_ORDER: "gateway.shipments",
}
DEFAULT_PORTAL_TIMEOUT = 10.0


def _secret(reference: str) -> str:
    """A secret reference resolved now (a missing one is an operator's problem: a permanent failure)."""
    try:
        value = resolve_secret(reference, key="secret")
    except ConfigError as exc:
        raise AuthError(f"credentials unavailable: {exc}") from None
    return value or ""


@dataclass
class _AgencyClient:
    """A cached client of one agency, the registration document it was built from, and its users."""

    document: dict[str, Any]
    client: RestOneStopClient | SoapOneStopClient
    users: int = 0
    retired: bool = False


@dataclass(frozen=True)
class _Work:
    """What one agency message needs from the database, read in one unit of work."""

    registration: dict[str, Any]
    protocol: str
    body: dict[str, Any] = field(default_factory=dict)
    components: list[dict[str, Any]] = field(default_factory=list)


class GatewayDispatcher:
    """Implements :class:`gateway.workers.Dispatcher` for the gateway's message kinds (see the module notes)."""

    def __init__(self, runtime: Runtime, *, factory: ClientFactory | None = None) -> None:
        self.runtime = runtime
        self.factory: ClientFactory = (
            factory
            or getattr(runtime, "client_factory", None)
            or runtime.extras.get("client_factory")
            or default_factory
        )
        self.address_policy = AddressPolicy(allow_private=runtime.registry_settings.allow_private_endpoints)
        self._agencies: dict[str, _AgencyClient] = {}
        self._portal: httpx.AsyncClient | None = None
        self._portal_url = ""
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._flows: dict[str, Any] = {}
        #: Messages dispatched successfully, by kind (for metrics and tests).
        self.counters: dict[str, int] = {}

    # -- the Dispatcher protocol ---------------------------------------------------------------------------------

    async def dispatch(self, message: MessageView) -> None:
        if self._closed:
            raise RuntimeError("the dispatcher is closed")  # retried by the next process
        if message.kind in messages.AGENCY_KINDS:
            await self._agency(message)
        elif message.kind == messages.PORTAL_WEBHOOK:
            await self._webhook(message)
        elif message.kind in FLOW_MODULES:
            await self.flow(FLOW_MODULES[message.kind]).handle(message)
        else:
            raise PermanentError(f"unknown message kind {message.kind!r}", upstream=message.target)
        self.counters[message.kind] = self.counters.get(message.kind, 0) + 1

    async def aclose(self) -> None:
        """Close every client (the daemon's shutdown)."""
        self._closed = True
        entries, self._agencies = list(self._agencies.values()), {}
        for entry in entries:
            await entry.client.aclose()
        for task in list(self._background):
            await task
        flows, self._flows = list(self._flows.values()), {}
        for flow in flows:
            await flow.aclose()
        if self._portal is not None:
            portal, self._portal = self._portal, None
            await portal.aclose()

    def flow(self, module: str) -> Any:
        """The flow module's handler of this dispatcher (built on first use, closed with the dispatcher)."""
        handler = self._flows.get(module)
        if handler is None:
            handler = importlib.import_module(module).Handler(self)
            self._flows[module] = handler
        return handler

    def agency_client(self, agency_code: str, document: dict[str, Any]) -> RestOneStopClient | SoapOneStopClient:
        """The cached client of a registered agency (the flows and the poller share the dispatcher's clients)."""
        return self._client(agency_code, document).client

    # -- agencies ------------------------------------------------------------------------------------------------

    async def _agency(self, message: MessageView) -> None:
        payload = message.payload
        code = payload.get("dossier_code")
        agency_code = payload.get("agency_code") or message.target
        if not isinstance(code, str) or not code or not isinstance(agency_code, str) or not agency_code:
            raise PermanentError("the message names no dossier or agency", upstream=message.target)
        upstream = f"agency:{agency_code}"
        work = await self.runtime.db.run(functools.partial(self._read, message.kind, code, agency_code, payload))
        if work.protocol not in ("rest", "soap"):
            raise PermanentError(f"protocol {work.protocol!r} is not supported", upstream=upstream)
        entry = self._client(agency_code, work.registration)
        entry.users += 1
        try:
            client = entry.client
            if message.kind == messages.AGENCY_DELIVER:
                receipt = await client.deliver(work.body, message.idempotency_key)
                log.info(
                    "dossier delivered",
                    extra={
                        "dossier_code": code,
                        "agency_code": agency_code,
                        "duplicate": receipt.duplicate,
                        "status_code": receipt.status_code,
                    },
                )
            elif message.kind == messages.AGENCY_SUPPLEMENT:
                await client.supplement(code, work.components, message.idempotency_key)
                log.info("supplement delivered", extra={"dossier_code": code, "agency_code": agency_code})
            else:
                reason = payload.get("reason")
                await client.withdraw(code, reason if isinstance(reason, str) else "", message.idempotency_key)
                log.info("withdrawal delivered", extra={"dossier_code": code, "agency_code": agency_code})
        except ValueError as exc:  # a dossier code or key the client refuses to send
            raise PermanentError(f"cannot send: {exc}", upstream=upstream) from None
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                await entry.client.aclose()

    @staticmethod
    def _read(kind: str, code: str, agency_code: str, payload: Mapping[str, Any], session: Session) -> _Work:
        from .dossiers import agency_document  # the read model imports the services: import it when first needed

        upstream = f"agency:{agency_code}"
        try:
            registration = get_agency(session, agency_code)
        except ValidationError:
            message = f"agency {agency_code}: the stored registration is invalid"
            raise PermanentError(message, upstream=upstream) from None
        if registration is None:
            raise PermanentError(f"agency {agency_code} is not registered", upstream=upstream)
        document = registration.document()
        if kind == messages.AGENCY_WITHDRAW:
            return _Work(registration=document, protocol=registration.protocol)
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one_or_none()
        if dossier is None:
            raise PermanentError(f"no dossier {code}", upstream=upstream)
        body = agency_document(session, dossier, agency_code=agency_code)
        if kind == messages.AGENCY_DELIVER:
            return _Work(registration=document, protocol=registration.protocol, body=body)
        wanted = payload.get("components")
        codes = {c for c in wanted if isinstance(c, str)} if isinstance(wanted, list) else None
        components = [c for c in body.get("components", []) if codes is None or c.get("code") in codes]
        if not components:
            raise PermanentError(f"dossier {code} has none of the supplemented components", upstream=upstream)
        return _Work(registration=document, protocol=registration.protocol, components=components)

    def _client(self, agency_code: str, document: dict[str, Any]) -> _AgencyClient:
        """The cached client of ``agency_code``, rebuilt when its registration document changed."""
        entry = self._agencies.get(agency_code)
        if entry is not None and entry.document == document:
            return entry
        try:
            client: RestOneStopClient | SoapOneStopClient
            if document.get("protocol") == "soap":
                client = SoapOneStopClient.from_document(
                    document,
                    resolve_secret=_secret,
                    factory=self.factory,
                    cache_dir=self._wsdl_cache_dir(),
                    address_policy=self.address_policy,
                )
            else:
                client = RestOneStopClient.from_document(
                    document, resolve_secret=_secret, factory=self.factory, address_policy=self.address_policy
                )
        except ValueError as exc:
            upstream = f"agency:{agency_code}"
            raise PermanentError(f"cannot reach the agency as registered: {exc}", upstream=upstream) from None
        fresh = _AgencyClient(document=document, client=client)
        self._agencies[agency_code] = fresh
        if entry is not None:
            log.info("agency registration changed: client rebuilt", extra={"agency_code": agency_code})
            entry.retired = True
            if entry.users == 0:
                # Closed in the background of the next await; nothing else holds it.
                self._retire_later(entry)
        return fresh

    def _wsdl_cache_dir(self) -> Any:
        """The runtime's ``wsdl_cache_dir`` (none for a runtime without one: descriptions not kept on disk)."""
        try:
            return getattr(self.runtime, "wsdl_cache_dir", None)
        except ConfigError as exc:
            raise PermanentError(str(exc), upstream="wsdl") from None

    def _retire_later(self, entry: _AgencyClient) -> None:
        task = asyncio.get_running_loop().create_task(entry.client.aclose())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the provincial portal -----------------------------------------------------------------------------------

    def _portal_client(self) -> httpx.AsyncClient:
        if self._portal is not None:
            return self._portal
        section = self.runtime.config.section("portal")
        url = section.get("webhook_url")
        if not isinstance(url, str) or not url:
            raise PermanentError("[portal] webhook_url is not configured", upstream=PORTAL_UPSTREAM)
        timeout = section.get("timeout_seconds", DEFAULT_PORTAL_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise PermanentError("[portal] timeout_seconds must be a positive number", upstream=PORTAL_UPSTREAM)
        try:
            settings = ClientSettings(
                base_url=url,
                timeout_seconds=float(timeout),
                connect_timeout_seconds=min(5.0, float(timeout)),
                total_timeout_seconds=max(float(timeout), 1.0) * 2,
                address_policy=AddressPolicy(allow_private=True),
            )
        except ValueError as exc:
            raise PermanentError(f"[portal] webhook_url: {exc}", upstream=PORTAL_UPSTREAM) from None
        token = section.get("token")
        auth = bearer(functools.partial(_secret, token)) if isinstance(token, str) and token else None
        self._portal = self.factory.client(PORTAL_UPSTREAM, settings, auth=auth)
        self._portal_url = url
        return self._portal

    async def _webhook(self, message: MessageView) -> None:
        client = self._portal_client()
        body = dict(message.payload)
        event = body.get("event")
        if isinstance(event, dict) and isinstance(event.get("status"), str):
            try:
                body["event"] = {**event, "national_status_code": national_code(event["status"])}
            except (KeyError, ValueError):
                pass
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": message.idempotency_key,
        }
        with map_http_errors(PORTAL_UPSTREAM):
            response = await client.post(self._portal_url, content=content, headers=headers)
        raise_for_status(response, PORTAL_UPSTREAM)
        log.info(
            "portal notified", extra={"dossier_code": body.get("dossier_code"), "status_code": response.status_code}
        )
