"""A simulated agency one-stop system speaking the reference SOAP service (``adapters/onestop/wsdl``).

For tests, demos and agencies' own trials; never for production (state is in memory, ``/_sim`` is not
authenticated). Built with lxml alone (a hardened parser: no DTD, no entities, no network, no huge trees), not with
zeep, so that it checks the gateway's client rather than mirroring it.

* ``POST /soap``: SOAP 1.1 (``text/xml``) or SOAP 1.2 (``application/soap+xml``), chosen by the content type; an
  envelope of the other version gets a ``VersionMismatch`` fault. Requests are validated against ``hoso.xsd``.
  ``TiepNhanHoSo``, ``LayTrangThaiHoSo`` (``MaHoSo``, or ``TuThoiDiem`` for every change since), ``BoSungHoSo``,
  ``RutHoSo``; business rejections are faults with a ``LoiNghiepVu`` detail (``DA_TON_TAI``, ``KHONG_TIM_THAY``,
  ``KHONG_HOP_LE``, ``KHONG_CHO_PHEP``, ``KHOA_DA_DUNG``).
* ``GET /soap?wsdl``: the WSDL (addresses pointing at this server), ``GET /soap?xsd=hoso.xsd``: its schema; each
  fetch is counted (``wsdl_fetches``, ``xsd_fetches``).
* Idempotency: a repeated ``KhoaYeuCau`` gets the first answer again (``LapLai`` true) and causes no second effect;
  the same key with another request is refused (``KHOA_DA_DUNG``); ``effects`` counts what really happened.
* ``token``: requests without ``Authorization: Bearer <token>`` are refused (401); ``wsse=(user, password)``:
  requests without that WS-Security UsernameToken (text or digest) get a ``wsse:FailedAuthentication`` fault.
* ``mapping_variant=True``: a deliberately different service (other namespace, operation and element names,
  numeric status codes) that the gateway reaches only with :data:`VARIANT_MAPPING`.

Test and demo controls, under ``/_sim`` (as the REST simulator's):

* ``POST /_sim/faults`` ``{"fail_next": N, "fail_code": "TU_CHOI", "soap_server_fault": N, "html_next": N,
  "truncate_next": N, "delay_seconds": D, "oversize_next": N, "oversize_bytes": B, "wrong_namespace_next": N,
  "version_mismatch_next": N, "xml_bomb_next": N}`` (or ``{"reset": true}``): a business fault with a detail
  (request not handled); a ``soap:Server`` fault without detail (not handled); a 200 HTML page (not handled); the
  answer cut in the middle (handled); a delay before answering; a streamed envelope of ``oversize_bytes``; the
  answer element in a wrong namespace (handled); an envelope of the other SOAP version (handled); a
  billion-laughs document;
* ``GET /_sim/state``, ``POST /_sim/reset``, ``POST /_sim/dossiers/{code}/events`` as the REST simulator's. With a
  ``callback_url`` ending in ``/soap/callback`` (the gateway's SOAP callback service), the clerk's events are posted
  as SOAP 1.1 ``CapNhatTrangThaiHoSo`` requests (:func:`callback_envelope`) with the bearer ``callback_token``;
  any other ``callback_url`` gets the REST agency event as JSON. The mapping variant reports its status codes (the
  national portal's), which the gateway reads as such.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from adapters.http import ClientFactory, default_factory
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.soap_agency_handlers import Handlers
from gateway.simulators.soap_agency_service import SoapAgencySimulator, SoapFaults
from gateway.simulators.soap_agency_xml import (
    CALLBACK_NAMESPACE,
    NATIONAL_STATUS_CODES,
    VARIANT_FIELDS,
    VARIANT_MAPPING,
    VARIANT_NAMESPACE,
    VARIANT_OPERATIONS,
    callback_envelope,
    service_documents,
)

__all__ = [
    "CALLBACK_NAMESPACE",
    "NATIONAL_STATUS_CODES",
    "VARIANT_FIELDS",
    "VARIANT_MAPPING",
    "VARIANT_NAMESPACE",
    "VARIANT_OPERATIONS",
    "SoapAgencySimulator",
    "SoapFaults",
    "callback_envelope",
    "create_soap_app",
    "service_documents",
]


def create_soap_app(
    *,
    mapping_variant: bool = False,
    token: str | None = None,
    wsse: tuple[str, str] | None = None,
    callback_url: str | None = None,
    callback_token: str | None = None,
    callback_protocol: str | None = None,
    factory: ClientFactory | None = None,
) -> ASGIApp:
    """The SOAP simulator as an ASGI app; its :class:`SoapAgencySimulator` is ``app.state.simulator``.

    :param mapping_variant: serve the deliberately different service (needs :data:`VARIANT_MAPPING`).
    :param token: bearer token ``POST /soap`` requires (none: open).
    :param wsse: ``(username, password)`` of the WS-Security UsernameToken required (none: not required).
    :param callback_url: where agency events are posted: the gateway's SOAP callback service
        (``…/soap/callback``) or its ``/api/v1/agencies/{agency}/events``.
    :param callback_token: bearer token sent with them.
    :param callback_protocol: ``soap`` or ``rest``; by default ``soap`` when ``callback_url`` ends in
        ``/soap/callback``.
    :param factory: HTTP client factory for the callbacks (the process-wide one by default).
    """
    if callback_protocol is None:
        path = (callback_url or "").split("?", 1)[0].rstrip("/")
        callback_protocol = "soap" if path.endswith("/soap/callback") else "rest"
    if callback_protocol not in ("soap", "rest"):
        raise ValueError("callback_protocol must be soap or rest")
    core = AgencySimulator(callback_url=callback_url, callback_token=callback_token, factory=factory or default_factory)
    if callback_protocol == "soap":
        core.callback_encoder = functools.partial(callback_envelope, status_codes=mapping_variant)
    sim = SoapAgencySimulator(core=core, mapping_variant=mapping_variant, token=token, wsse=wsse)
    handlers = Handlers(sim)
    routes = [
        Route("/soap", handlers.get, methods=["GET"]),
        Route("/soap", handlers.post, methods=["POST"]),
        Route("/_sim/faults", handlers.faults, methods=["POST"]),
        Route("/_sim/state", handlers.state, methods=["GET"]),
        Route("/_sim/reset", handlers.reset, methods=["POST"]),
        Route("/_sim/dossiers/{code}/events", handlers.event, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await core.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
