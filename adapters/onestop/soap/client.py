"""The one-stop client of an agency speaking SOAP: :class:`SoapOneStopClient`.

It implements :class:`~adapters.onestop.port.OneStopClient` with zeep over the agency's factory ``httpx`` client:
the description comes from a :class:`~adapters.onestop.soap.loader.WsdlLoader`, each call builds its request from
the dossier in reference names (renamed by the agency's :class:`~adapters.onestop.soap.mapping.SoapMapping`) and
reads the answer back the same way.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, cast

import httpx
import zeep
import zeep.exceptions
from zeep.wsse.username import UsernameToken

from adapters.errors import BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.http import ClientFactory, default_factory, map_http_errors
from adapters.http import settings_from_document as _settings_from_document
from adapters.netguard import AddressPolicy
from adapters.onestop.port import Acknowledgement, AgencyStatus, DeliveryReceipt
from adapters.onestop.soap.answers import AnswerCheck, PayloadLeftToRead, fault_error, read_payload
from adapters.onestop.soap.documents import ZEEP_SETTINGS
from adapters.onestop.soap.dossier import aware, checked_code, checked_key, component, dossier_to_hoso, text
from adapters.onestop.soap.envelopes import RequestShape, build_request, request_shape
from adapters.onestop.soap.errors import SoapFaultError, WsdlError, one_line
from adapters.onestop.soap.fetch import WsdlLimits
from adapters.onestop.soap.loader import LoadedWsdl, WsdlLoader
from adapters.onestop.soap.mapping import SoapMapping
from adapters.onestop.soap.schema import fit, message_type, select_port, soap_version_of
from adapters.onestop.soap.transport import CURRENT_CALL, CallRecord, GatewayAsyncTransport
from adapters.onestop.soap.wsse import LazyUsernameToken

__all__ = ["DEFAULT_MAX_ANSWER_BYTES", "FAULT_ALREADY_EXISTS", "SoapOneStopClient"]

logger = logging.getLogger(__name__)

#: The size cap of the client :meth:`SoapOneStopClient.from_document` builds (``max_response_bytes``): answers to
#: operations larger than this are abandoned while streaming (documents travel by URL, not in answers).
DEFAULT_MAX_ANSWER_BYTES = 10 * 1024 * 1024

#: Business fault codes with a meaning for the gateway (any other code is a rejection too).
FAULT_ALREADY_EXISTS = "DA_TON_TAI"

_MISMATCH_ERRORS = (zeep.exceptions.Error, TypeError, ValueError, KeyError, IndexError, AttributeError)


def _wsse_from_auth(auth: Mapping[str, Any], resolve_secret: Callable[[str], str]) -> LazyUsernameToken:
    """The UsernameToken of an ``auth`` object of type ``wsse`` (its password reference checked now)."""
    username, reference = auth.get("username"), auth.get("password")
    if not isinstance(username, str) or not username or not isinstance(reference, str) or not reference:
        raise ValueError("auth.username and auth.password are required for auth type 'wsse'")
    resolve_secret(reference)  # a missing variable or file is reported now, the value dropped

    def password() -> str:
        return resolve_secret(reference)

    return LazyUsernameToken(username, password, use_digest=bool(auth.get("digest", False)))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


class SoapOneStopClient:
    """An agency one-stop system speaking the reference SOAP service (or a mapped variant of it).

    The reference service (:mod:`adapters.onestop.wsdl`) has four operations::

        deliver     TiepNhanHoSo      KhoaYeuCau (idempotency key), HoSo (the dossier)
        status      LayTrangThaiHoSo  MaHoSo (one dossier) or TuThoiDiem (every change since a time)
        supplement  BoSungHoSo        KhoaYeuCau, MaHoSo, ThanhPhanHoSo+
        withdraw    RutHoSo           KhoaYeuCau, MaHoSo, LyDo

    ``http`` comes from :meth:`adapters.http.ClientFactory.client` (the agency's settings and auth, whose
    ``max_response_bytes`` caps each answer); it fetches the service description and carries every operation, and
    is not closed by this object unless it was made by :meth:`from_document`. The description is loaded at the first
    call (or by :meth:`load`) through ``wsdl_loader``, once per loader for each WSDL URL; the client then builds one
    ``zeep.AsyncClient`` with this client's credentials, which every call (concurrent ones included) shares over the
    chosen port's binding, with ``endpoint`` (when registered) as the address. Each call does what zeep's service
    proxy does, but a plain request is rendered from its values (:mod:`adapters.onestop.soap.envelopes`) and the
    answer's payload is left to :func:`~adapters.onestop.soap.answers.read_payload`, which reads it by the same
    types.

    A fault whose detail carries ``LoiNghiepVu`` is a :class:`~adapters.onestop.soap.errors.SoapFaultError`
    (``DA_TON_TAI`` to a delivery means "already there" and counts as delivered); ``soap:Server``/``env:Receiver``
    without one and HTTP 5xx are transient; an answer that is not a well-formed envelope of the version spoken, or
    carries the wrong element, is a :class:`~adapters.errors.BadResponseError` whose message never quotes it.

    :param wsdl: the WSDL's URL.
    :param endpoint: the service address, overriding the WSDL's ``soap:address``.
    :param mapping: a registration document's ``mapping`` (:class:`~adapters.onestop.soap.mapping.SoapMapping`).
    :param wsse: a WS-Security token (:class:`~adapters.onestop.soap.wsse.LazyUsernameToken`) added to every message.
    :param cache_dir: where fetched descriptions are kept for offline restarts (none: not kept).
    :param address_policy: the policy ``http`` enforces (part of the loader's key).
    :param wsdl_loader: the loader shared with other clients (none: a loader of this client's own).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        agency_code: str,
        wsdl: str,
        endpoint: str | None = None,
        mapping: Mapping[str, Any] | None = None,
        upstream: str | None = None,
        wsse: UsernameToken | None = None,
        limits: WsdlLimits | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        address_policy: AddressPolicy | None = None,
        wsdl_loader: WsdlLoader | None = None,
    ) -> None:
        for name, url in (("wsdl", wsdl), ("endpoint", endpoint)):
            if url is not None and urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
                raise ValueError(f"{name} must be an absolute http:// or https:// URL")
        self._http = http
        self.agency_code = agency_code
        self.wsdl = wsdl
        self.endpoint = endpoint
        self.mapping = SoapMapping.parse(mapping)
        self.upstream = upstream or f"agency:{agency_code}"
        self.limits = limits or WsdlLimits()
        self.cache_dir = cache_dir
        self.address_policy = address_policy
        self.wsdl_loader = wsdl_loader if wsdl_loader is not None else WsdlLoader()
        self._transport = GatewayAsyncTransport(http, upstream=self.upstream)
        self._wsse = wsse
        self._owns_client = False
        self._loaded: LoadedWsdl | None = None
        self._binding: Any = None
        self._zeep: tuple[LoadedWsdl, zeep.AsyncClient] | None = None
        self._operations: dict[str, tuple[RequestShape | None, PayloadLeftToRead]] = {}
        self.address: str | None = None
        self.soap_version: str | None = None
        self.port_name: str | None = None

    @classmethod
    def from_document(
        cls,
        document: Mapping[str, Any],
        *,
        resolve_secret: Callable[[str], str],
        factory: ClientFactory | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        limits: WsdlLimits | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        wsdl_loader: WsdlLoader | None = None,
        **settings: Any,
    ) -> SoapOneStopClient:
        """A client (owning its ``httpx.AsyncClient``) for an agency registration document with protocol ``soap``.

        ``auth`` may also be ``{"type": "wsse", "username": …, "password": "env:…", "digest": false}``: a
        WS-Security UsernameToken in every message (PasswordText, or PasswordDigest with ``digest``), the password
        resolved when each message is built. ``max_answer_bytes`` is the client's ``max_response_bytes``;
        ``settings`` are further :class:`~adapters.http.ClientSettings` fields. ``wsdl_loader`` is the loader shared
        by the application's clients (none: a loader of this client's own).
        """
        if document.get("protocol") != "soap":
            raise ValueError("the registration document's protocol is not 'soap'")
        code = checked_code(document.get("code"))
        wsdl = document.get("wsdl")
        if not isinstance(wsdl, str) or not wsdl:
            raise ValueError("wsdl is required for protocol soap")
        mapping = document.get("mapping")
        SoapMapping.parse(mapping)  # validated before a client exists: nothing to close on error
        auth = document.get("auth") or {"type": "none"}
        wsse: UsernameToken | None = None
        http_document = dict(document)
        if auth.get("type") == "wsse":
            wsse = _wsse_from_auth(auth, resolve_secret)
            http_document["auth"] = {"type": "none"}
        client_settings, http_auth = _settings_from_document(
            http_document, resolve_secret, max_response_bytes=max_answer_bytes, **settings
        )
        upstream = f"agency:{code}"
        http = (factory or default_factory).client(upstream, client_settings, auth=http_auth)
        instance = cls(
            http,
            agency_code=code,
            wsdl=wsdl,
            endpoint=document.get("endpoint") or None,
            mapping=mapping,
            upstream=upstream,
            wsse=wsse,
            limits=limits,
            cache_dir=cache_dir,
            address_policy=client_settings.address_policy,
            wsdl_loader=wsdl_loader,
        )
        instance._owns_client = True
        return instance

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def __aenter__(self) -> SoapOneStopClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- binding -------------------------------------------------------------------------------------------------------

    async def load(self) -> LoadedWsdl:
        """Load the service description (once per loader) and choose the port and address (once per client)."""
        if self._loaded is not None:
            return self._loaded
        loaded = await self.wsdl_loader.load(
            self.wsdl,
            self._http,
            upstream=self.upstream,
            limits=self.limits,
            cache_dir=self.cache_dir,
            settings_key=self.address_policy,
        )
        port = select_port(loaded.document, soap_version=self.mapping.soap_version, port=self.mapping.port)
        address = self.endpoint or (port.binding_options or {}).get("address")
        if not isinstance(address, str) or urllib.parse.urlsplit(address).scheme.lower() not in ("http", "https"):
            raise WsdlError(f"port {port.name} has no http(s) address: register an endpoint", upstream=self.upstream)
        self._binding = port.binding
        self.address = address
        self.soap_version = soap_version_of(port.binding)
        self.port_name = port.name
        self._loaded = loaded
        return loaded

    def _zeep_client(self, loaded: LoadedWsdl) -> zeep.AsyncClient:
        """The zeep client of this client (built once per loaded description): this client's transport and
        credentials; each call records into its task's :data:`~adapters.onestop.soap.transport.CURRENT_CALL`."""
        if self._zeep is not None and self._zeep[0] is loaded:
            return self._zeep[1]
        client = zeep.AsyncClient(
            wsdl=loaded.document,
            wsse=self._wsse,
            transport=self._transport,
            plugins=[AnswerCheck(self.upstream)],
            settings=ZEEP_SETTINGS,
        )
        self._zeep = (loaded, client)
        self._operations = {}
        return client

    async def _send(self, loaded: LoadedWsdl, name: str, operation: Any, parameters: Mapping[str, Any]) -> None:
        """What zeep's service proxy does for a call: the request built by :func:`build_request`, the answer
        processed by zeep with its payload left to :func:`read_payload`."""
        client = self._zeep_client(loaded)
        prepared = self._operations.get(name)
        if prepared is None:
            prepared = self._operations[name] = (request_shape(operation), PayloadLeftToRead(operation))
        shape, reading = prepared
        address = cast(str, self.address)
        envelope, headers = build_request(self._binding, operation, shape, parameters, client=client, address=address)
        response = await client.transport.post_xml(address, envelope, headers)
        self._binding.process_reply(client, reading, response)

    async def _call(self, operation: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``operation`` with ``values`` (reference names); the answer's payload in reference names."""
        loaded = await self.load()
        name = self.mapping.operation(operation)
        zeep_operation = self._binding._operations.get(name)
        if zeep_operation is None:
            raise WsdlError(f"the service has no operation {name} ({operation})", upstream=self.upstream)
        parameters = fit(self.mapping.outbound(dict(values)), message_type(zeep_operation.input))
        call = CallRecord()
        token = CURRENT_CALL.set(call)
        try:
            with map_http_errors(self.upstream):
                await self._send(loaded, name, zeep_operation, parameters)
        except UpstreamError:
            raise
        except zeep.exceptions.Fault as fault:
            raise fault_error(
                fault, name, mapping=self.mapping, upstream=self.upstream, status_code=call.status_code
            ) from None
        except (zeep.exceptions.DTDForbidden, zeep.exceptions.EntitiesForbidden) as exc:
            raise BadResponseError("the answer carries a DTD or entities (refused)", upstream=self.upstream) from exc
        except zeep.exceptions.TransportError as exc:
            raise self._transport_error(exc, call) from exc
        except _MISMATCH_ERRORS as exc:
            reason = one_line(str(exc) or type(exc).__name__, 160)
            if not call.sent:
                raise PermanentError(f"cannot build the {name} request: {reason}", upstream=self.upstream) from exc
            raise BadResponseError(
                f"the {name} answer does not match the service description: {reason}",
                upstream=self.upstream,
                status_code=call.status_code,
            ) from exc
        finally:
            CURRENT_CALL.reset(token)
        return self.mapping.inbound(read_payload(zeep_operation, call.envelope, upstream=self.upstream))

    def _transport_error(self, exc: zeep.exceptions.TransportError, call: CallRecord) -> UpstreamError:
        status = exc.status_code or call.status_code
        if status and status >= 500 and not exc.content:
            return TransientError("server error without content", upstream=self.upstream, status_code=status)
        return BadResponseError(
            "the answer is not well-formed XML (truncated or damaged)", upstream=self.upstream, status_code=status
        )

    # -- operations ----------------------------------------------------------------------------------------------------

    async def deliver(self, dossier: Mapping[str, Any], idempotency_key: str) -> DeliveryReceipt:
        """``TiepNhanHoSo``; a ``DA_TON_TAI`` rejection means the agency already has the dossier (delivered)."""
        hoso = dossier_to_hoso(dossier)
        code = hoso["MaHoSo"]
        try:
            answer = await self._call("deliver", {"KhoaYeuCau": checked_key(idempotency_key), "HoSo": hoso})
        except SoapFaultError as exc:
            if exc.business_code != FAULT_ALREADY_EXISTS:
                raise
            logger.info("Dossier %s already at %s", code, self.upstream)
            return DeliveryReceipt(dossier_code=code, duplicate=True, status_code=exc.status_code)
        answered = answer.get("MaHoSo")
        if answered not in (None, "") and str(answered) != code:
            raise BadResponseError("the delivery answer is about another dossier", upstream=self.upstream)
        logger.info("Dossier %s delivered to %s (SOAP %s)", code, self.upstream, self.soap_version)
        reference = answer.get("MaThamChieu")
        return DeliveryReceipt(
            dossier_code=code,
            duplicate=bool(answer.get("LapLai")),
            agency_reference=str(reference) if reference not in (None, "") else None,
            status=self.mapping.status(answer.get("TrangThai")),
            received_at=self._time(answer.get("ThoiDiemTiepNhan")),
            status_code=200,
            body=answer,
        )

    async def get_status(self, code: str) -> AgencyStatus:
        """``LayTrangThaiHoSo`` with ``MaHoSo``."""
        code = checked_code(code)
        answer = await self._call("status", {"MaHoSo": code})
        entries = [self._status(entry) for entry in _as_list(answer.get("TrangThaiHoSo"))]
        if not entries:
            raise BadResponseError("the status answer has no status", upstream=self.upstream)
        for entry in entries:
            if entry.dossier_code == code:
                return entry
        raise BadResponseError("the status answer is about another dossier", upstream=self.upstream)

    async def changes_since(self, since: datetime) -> list[AgencyStatus]:
        """``LayTrangThaiHoSo`` with ``TuThoiDiem``: every dossier whose status changed since ``since`` (polling)."""
        answer = await self._call("status", {"TuThoiDiem": aware(since, "since")})
        return [self._status(entry) for entry in _as_list(answer.get("TrangThaiHoSo"))]

    async def supplement(
        self, code: str, components: Sequence[Mapping[str, Any]], idempotency_key: str
    ) -> Acknowledgement:
        """``BoSungHoSo``."""
        code = checked_code(code)
        if not components:
            raise ValueError("a supplement needs at least one component")
        values = {
            "KhoaYeuCau": checked_key(idempotency_key),
            "MaHoSo": code,
            "ThanhPhanHoSo": [component(item) for item in components],
        }
        return self._acknowledgement(code, await self._call("supplement", values))

    async def withdraw(self, code: str, reason: str, idempotency_key: str) -> Acknowledgement:
        """``RutHoSo``."""
        code = checked_code(code)
        values = {"KhoaYeuCau": checked_key(idempotency_key), "MaHoSo": code, "LyDo": text(reason)}
        return self._acknowledgement(code, await self._call("withdraw", values))

    # -- answers -------------------------------------------------------------------------------------------------------

    def _acknowledgement(self, code: str, answer: dict[str, Any]) -> Acknowledgement:
        answered = answer.get("MaHoSo")
        if answered not in (None, "") and str(answered) != code:
            raise BadResponseError("the answer is about another dossier", upstream=self.upstream)
        if answer.get("ChapNhan") is False:
            raise PermanentError("the agency did not accept the request", upstream=self.upstream)
        return Acknowledgement(
            dossier_code=code,
            duplicate=bool(answer.get("LapLai")),
            status=self.mapping.status(answer.get("TrangThai")),
            status_code=200,
            body=answer,
        )

    def _result(self, result: Any) -> Any:
        """A status entry's ``KetQua`` in our names (anything else as it is)."""
        if not isinstance(result, Mapping):
            return result
        signed = self._time(result.get("NgayKy"))
        converted = {
            "number": result.get("SoKetQua"),
            "signed_at": signed.isoformat() if signed else None,
            "url": result.get("DuongDan"),
            "note": result.get("GhiChu"),
        }
        return {key: value for key, value in converted.items() if value is not None}

    def _status(self, entry: Any) -> AgencyStatus:
        if not isinstance(entry, Mapping):
            raise BadResponseError("the status answer has an unreadable entry", upstream=self.upstream)
        code, status = entry.get("MaHoSo"), self.mapping.status(entry.get("TrangThai"))
        if not code or not status:
            raise BadResponseError("a status entry has no MaHoSo or TrangThai", upstream=self.upstream)
        return AgencyStatus(
            dossier_code=str(code),
            status=status,
            at=self._time(entry.get("ThoiDiem")),
            note=text(entry.get("GhiChu")),
            reason=text(entry.get("LyDo")),
            due_at=self._time(entry.get("NgayHenTra")),
            transfer_to=text(entry.get("ChuyenDen")),
            result=self._result(entry.get("KetQua")),
            body=dict(entry),
        )

    def _time(self, value: Any) -> datetime | None:
        try:
            return aware(value, "timestamp")
        except ValueError as exc:
            raise BadResponseError("a timestamp in the answer is not ISO 8601", upstream=self.upstream) from exc
