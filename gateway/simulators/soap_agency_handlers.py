"""The SOAP simulator's HTTP layer: ``GET /soap`` (WSDL, XSD), ``POST /soap`` (envelopes, faults, injected faults)
and the ``/_sim`` controls."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator

from lxml import etree
from lxml.builder import ElementMaker
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from adapters.onestop import wsdl as shipped
from adapters.onestop.wsdl.single import inline_schemas
from gateway.simulators.controls import apply_faults, inject_event
from gateway.simulators.soap_agency_service import SoapAgencySimulator, SoapFaults
from gateway.simulators.soap_agency_xml import (
    SOAP11,
    SOAP12,
    WSSE_NS,
    Fault,
    hardened_parser,
    reference_element,
    shorten,
)

_MEDIA = {"1.1": "text/xml", "1.2": "application/soap+xml"}
_ENVELOPES = {"1.1": SOAP11, "1.2": SOAP12}
_MAX_REQUEST_BYTES = 20 * 1024 * 1024
_CHUNK = 64 * 1024
_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Hệ thống đang bảo trì</h1><p>Vui lòng quay lại sau.</p></body></html>"
)
_XML_BOMB_DTD = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n"
)


# ----------------------------------------------------------------------------------------------------------------------
# Envelopes
# ----------------------------------------------------------------------------------------------------------------------


def _envelope(version: str, payload: etree._Element) -> bytes:
    soap = ElementMaker(namespace=_ENVELOPES[version], nsmap={"soap": _ENVELOPES[version]})
    envelope = soap.Envelope(soap.Body(payload))
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _fault_envelope(sim: SoapAgencySimulator, version: str, fault: Fault) -> tuple[int, bytes]:
    namespace = _ENVELOPES[version]
    soap = ElementMaker(namespace=namespace, nsmap={"soap": namespace, "wsse": WSSE_NS})
    detail_payload = None
    if fault.business is not None:
        code, text = fault.business
        detail_payload = sim.from_reference(reference_element("LoiNghiepVu", [("MaLoi", code), ("MoTa", text)]))
    if version == "1.1":
        code = {"client": "soap:Client", "server": "soap:Server", "version": "soap:VersionMismatch"}[fault.kind]
        if fault.security:
            code = "wsse:FailedAuthentication"
        body = soap.Fault(etree.Element("faultcode"), etree.Element("faultstring"))
        body[0].text, body[1].text = code, fault.text
        if detail_payload is not None:
            detail = etree.SubElement(body, "detail")
            detail.append(detail_payload)
        status = 500
    else:
        value = {"client": "soap:Sender", "server": "soap:Receiver", "version": "soap:VersionMismatch"}[fault.kind]
        code_element = soap.Code(soap.Value(value))
        if fault.security:
            code_element.append(soap.Subcode(soap.Value("wsse:FailedAuthentication")))
        reason = soap.Reason(soap.Text(fault.text))
        reason[0].set("{http://www.w3.org/XML/1998/namespace}lang", "vi")
        body = soap.Fault(code_element, reason)
        if detail_payload is not None:
            body.append(soap.Detail(detail_payload))
        status = 400 if fault.kind == "client" else 500
    envelope = soap.Envelope(soap.Body(body))
    return status, etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _soap_response(version: str, status: int, content: bytes) -> Response:
    return Response(content, status_code=status, media_type=f"{_MEDIA[version]}; charset=utf-8")


# ----------------------------------------------------------------------------------------------------------------------
# HTTP layer
# ----------------------------------------------------------------------------------------------------------------------


class Handlers:
    def __init__(self, sim: SoapAgencySimulator) -> None:
        self.sim = sim

    async def get(self, request: Request) -> Response:
        params = request.query_params
        if "wsdl" in params:
            self.sim.counters["wsdl_fetches"] += 1
            if "single" in params:  # one self-contained document: the schema inlined
                address = f"{request.url.scheme}://{request.url.netloc}/soap"
                document = inline_schemas(self.sim.wsdl, {shipped.REFERENCE_XSD: self.sim.xsd}, address=address)
                return Response(document, media_type="text/xml; charset=utf-8")
            return Response(self._wsdl(request), media_type="text/xml; charset=utf-8")
        if params.get("xsd") == shipped.REFERENCE_XSD:
            self.sim.counters["xsd_fetches"] += 1
            return Response(self.sim.xsd, media_type="text/xml; charset=utf-8")
        return Response("not found", status_code=404, media_type="text/plain")

    def _wsdl(self, request: Request) -> bytes:
        root = etree.fromstring(self.sim.wsdl, parser=hardened_parser())
        address = f"{request.url.scheme}://{request.url.netloc}/soap"
        for node in root.iter(etree.Element):
            qname = etree.QName(node)
            if qname.localname == "address" and node.get("location"):
                node.set("location", address)
            elif qname.localname == "import" and node.get("schemaLocation") == shipped.REFERENCE_XSD:
                node.set("schemaLocation", f"soap?xsd={shipped.REFERENCE_XSD}")
        return etree.tostring(root, xml_declaration=True, encoding="utf-8")

    async def post(self, request: Request) -> Response:
        sim, faults = self.sim, self.sim.faults
        sim.counters["requests"] += 1
        body = await _read_limited(request)
        if body is None:
            return Response("request too large", status_code=413, media_type="text/plain")
        media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        version = {"text/xml": "1.1", "application/soap+xml": "1.2"}.get(media)
        if version is None:
            return Response("unsupported media type", status_code=415, media_type="text/plain")
        sim.counters[f"soap{version.replace('.', '')}"] += 1
        if faults.delay_seconds > 0 and await _sleep_unless_gone(request, faults.delay_seconds):
            return Response(status_code=499)
        injected = self._injected_before(request, version)
        if injected is not None:
            return injected
        if sim.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {sim.token}".encode()):
                sim.counters["unauthorized"] += 1
                return Response(
                    "unauthorized",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": 'Bearer realm="agency"'},
                )
        status, content, answered_version = self._exchange(body, version)
        sim.exchanges.append((body, content))
        return self._injected_after(status, content, answered_version)

    def _injected_before(self, request: Request, version: str) -> Response | None:
        sim, faults = self.sim, self.sim.faults
        if faults.take("fail_next"):
            sim.counters["faults"] += 1
            fault = Fault("client", "rejected", (faults.fail_code, "Hồ sơ bị từ chối (lỗi giả lập)"))
            return _soap_response(version, *_fault_envelope(sim, version, fault))
        if faults.take("soap_server_fault"):
            sim.counters["faults"] += 1
            return _soap_response(version, *_fault_envelope(sim, version, Fault("server", "Internal error")))
        if faults.take("html_next"):
            sim.counters["faults"] += 1
            return HTMLResponse(_HTML_PAGE)
        if faults.take("xml_bomb_next"):
            sim.counters["faults"] += 1
            return _soap_response(version, 200, self._bomb(version))
        if faults.take("oversize_next"):
            sim.counters["faults"] += 1
            return StreamingResponse(
                self._oversized(request, version, max(faults.oversize_bytes, 1024)),
                media_type=f"{_MEDIA[version]}; charset=utf-8",
            )
        return None

    def _injected_after(self, status: int, content: bytes, version: str) -> Response:
        sim, faults = self.sim, self.sim.faults
        if status == 200 and faults.take("wrong_namespace_next"):
            sim.counters["faults"] += 1
            content = content.replace(self.sim.namespace.encode(), b"urn:khong-phai-dich-vu:9.9")
        elif status == 200 and faults.take("version_mismatch_next"):
            sim.counters["faults"] += 1
            other = "1.2" if version == "1.1" else "1.1"
            content = content.replace(_ENVELOPES[version].encode(), _ENVELOPES[other].encode())
            version = other
        elif faults.take("truncate_next"):
            sim.counters["faults"] += 1
            content = content[: len(content) // 2]
        return _soap_response(version, status, content)

    def _exchange(self, body: bytes, version: str) -> tuple[int, bytes, str]:
        """Handle one SOAP request: ``(HTTP status, answer, SOAP version of the answer)``."""
        sim = self.sim
        try:
            try:
                envelope = etree.fromstring(body, parser=hardened_parser())
            except etree.XMLSyntaxError as exc:
                raise Fault("client", f"not well-formed XML: {shorten(exc.msg or '', 80)}") from exc
            docinfo = envelope.getroottree().docinfo
            if docinfo.doctype or docinfo.internalDTD is not None:
                raise Fault("client", "DTDs are not allowed")
            namespace = etree.QName(envelope).namespace
            if etree.QName(envelope).localname != "Envelope" or namespace not in (SOAP11, SOAP12):
                raise Fault("client", "not a SOAP envelope")
            if namespace != _ENVELOPES[version]:
                raise Fault("version", "SOAP version does not match the content type")
            sim.check_wsse(envelope, namespace)
            soap_body = envelope.find(f"{{{namespace}}}Body")
            operations = [child for child in soap_body if isinstance(child.tag, str)] if soap_body is not None else []
            if len(operations) != 1:
                raise Fault("client", "the Body must hold one operation element")
            operation = operations[0]
            if etree.QName(operation).namespace != sim.namespace:
                raise Fault("client", "unknown operation namespace", ("KHONG_HOP_LE", "Sai không gian tên"))
            if not sim.schema.validate(operation):
                error = sim.schema.error_log.last_error
                message = shorten(error.message if error else "invalid", 160)
                raise Fault("client", "invalid request", ("KHONG_HOP_LE", message))
            payload = sim.handle(sim.to_reference(operation))
            return 200, _envelope(version, sim.from_reference(payload)), version
        except Fault as fault:
            return (*_fault_envelope(sim, version, fault), version)

    def _bomb(self, version: str) -> bytes:
        namespace = _ENVELOPES[version]
        return (
            _XML_BOMB_DTD + f'<soap:Envelope xmlns:soap="{namespace}"><soap:Body>'
            f'<mc:LayTrangThaiHoSoResponse xmlns:mc="{self.sim.namespace}"><mc:ThoiDiemTraLoi>&lol9;'
            "</mc:ThoiDiemTraLoi></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
        ).encode()

    async def _oversized(self, request: Request, version: str, size: int) -> AsyncIterator[bytes]:
        """An envelope of about ``size`` bytes, produced as it is sent; it stops when the client goes away."""
        namespace = _ENVELOPES[version]
        head = (
            f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{namespace}"><soap:Body>'
            f'<mc:LayTrangThaiHoSoResponse xmlns:mc="{self.sim.namespace}"><mc:TrangThaiHoSo>'
            "<mc:MaHoSo>X</mc:MaHoSo><mc:TrangThai>received</mc:TrangThai><mc:GhiChu>"
        ).encode()
        tail = b"</mc:GhiChu></mc:TrangThaiHoSo></mc:LayTrangThaiHoSoResponse></soap:Body></soap:Envelope>"
        remaining = size - len(head) - len(tail)
        self.sim.bytes_streamed += len(head)
        yield head
        while remaining > 0:
            if await request.is_disconnected():
                return
            chunk = b"x" * min(_CHUNK, remaining)
            remaining -= len(chunk)
            self.sim.bytes_streamed += len(chunk)
            yield chunk
        self.sim.bytes_streamed += len(tail)
        yield tail

    # -- /_sim ---------------------------------------------------------------------------------------------------------

    async def faults(self, request: Request) -> Response:
        return await apply_faults(request, self.sim, SoapFaults)

    async def state(self, request: Request) -> Response:
        return JSONResponse(self.sim.state())

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True})

    async def event(self, request: Request) -> Response:
        return await inject_event(request, self.sim.core.event)


async def _read_limited(request: Request) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _sleep_unless_gone(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, or less when the client goes away (then ``True``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(min(0.05, remaining))
        if await request.is_disconnected():
            return True
    return False
