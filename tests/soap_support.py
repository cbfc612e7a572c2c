"""Helpers of the SOAP tests: a uvicorn server thread, static document servers, raw envelopes, XSD validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import xmlschema
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.onestop import wsdl as shipped
from gateway.simulators.soap_agency import service_documents

AGENCY = "000.00.23.H38"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
MC = shipped.REFERENCE_NAMESPACE
MEDIA = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}


def static_app(documents: Mapping[str, tuple[int, str, bytes]]) -> Starlette:
    """Serves ``{"/path?query": (status, content type, body)}`` for GET; counts requests per path in ``app.state``."""
    hits: dict[str, int] = {}

    async def serve(request: Request) -> Response:
        key = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        hits[key] = hits.get(key, 0) + 1
        if key not in documents:
            return Response("not found", status_code=404, media_type="text/plain")
        status, media, body = documents[key]
        return Response(body, status_code=status, media_type=media)

    app = Starlette(routes=[Route("/{path:path}", serve, methods=["GET"])])
    app.state.hits = hits
    return app


def dossier(code: str = f"{AGENCY}-261123-0001", **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "procedure_code": "1.009794",
        "agency_code": AGENCY,
        "channel": "online",
        "summary": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "applicant": {
            "kind": "citizen",
            "full_name": "Nguyễn Văn A",
            "id_number": "001099012345",
            "phone": "0912345678",
            "email": "a@example.vn",
            "address": "Số 1, phường Hàng Bạc",
        },
        "components": [
            {
                "code": "TP1",
                "name": "Đơn đề nghị",
                "filename": "don.pdf",
                "content_type": "application/pdf",
                "sha256": "9f2c" * 16,
                "fetch_url": "https://lgsp.example.gov.vn/files/9f2c",
            },
            {
                "code": "TP2",
                "name": "Bản vẽ",
                "filename": "ban-ve.pdf",
                "content_type": "application/pdf",
                "content_base64": "JVBERi0xLjcK",
            },
        ],
        "fees": [{"code": "LP1", "name": "Lệ phí cấp phép", "amount": 150000}],
        "received_at": "2026-11-23T08:05:00+07:00",
        "due_at": "2026-12-14T17:00:00+07:00",
        "originals_check_required": False,
        "return_method": "post",
        **extra,
    }


def schema(*, mapping_variant: bool = False) -> xmlschema.XMLSchema:
    """``hoso.xsd`` (or the variant's) for xmlschema."""
    _wsdl, xsd = service_documents(mapping_variant=mapping_variant)
    return xmlschema.XMLSchema(xsd.decode("utf-8"))


def payload(envelope: bytes) -> etree._Element:
    """The single element in a SOAP envelope's Body."""
    root = etree.fromstring(envelope, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    namespace = etree.QName(root).namespace
    body = root.find(f"{{{namespace}}}Body")
    assert body is not None
    children = [child for child in body if isinstance(child.tag, str)]
    assert len(children) == 1
    return children[0]


def envelope(version: str, operation: etree._Element, header: etree._Element | None = None) -> bytes:
    namespace = SOAP11 if version == "1.1" else SOAP12
    root = etree.Element(f"{{{namespace}}}Envelope", nsmap={"soap": namespace})
    if header is not None:
        etree.SubElement(root, f"{{{namespace}}}Header").append(header)
    etree.SubElement(root, f"{{{namespace}}}Body").append(operation)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def element(name: str, *children: etree._Element | tuple[str, str], namespace: str = MC) -> etree._Element:
    """``<name>`` in ``namespace`` with children: elements, or ``(name, text)`` leaves."""
    node = etree.Element(f"{{{namespace}}}{name}", nsmap={"mc": namespace})
    for child in children:
        if isinstance(child, tuple):
            leaf = etree.SubElement(node, f"{{{namespace}}}{child[0]}")
            leaf.text = child[1]
        else:
            node.append(child)
    return node


async def faults(base_url: str, **changes: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=5) as admin:
        response = await admin.post("/_sim/faults", json=changes)
        response.raise_for_status()


async def sim_state(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=5) as admin:
        return (await admin.get("/_sim/state")).json()
