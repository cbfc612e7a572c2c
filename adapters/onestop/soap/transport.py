"""zeep's async transport over a gateway ``httpx.AsyncClient``, screening every answer before zeep parses it.

Size cap, total deadline, address policy and TLS are the factory client's (:class:`~adapters.http.LimitedTransport`
and below); this transport posts envelopes, records what each call learns in its :class:`CallRecord`, and refuses
answers that are not a SOAP envelope of the version spoken.
"""

from __future__ import annotations

import contextvars
import copy
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import requests
import zeep.exceptions
from lxml import etree
from zeep.transports import AsyncTransport
from zeep.wsdl.utils import etree_to_string

from adapters.errors import AuthError, BadResponseError, PermanentError
from adapters.http import error_for_response, map_http_errors
from adapters.onestop.soap.errors import one_line
from adapters.onestop.soap.fetch import HTML_START

__all__ = ["CURRENT_CALL", "SOAP11_ENVELOPE", "SOAP12_ENVELOPE", "CallRecord", "GatewayAsyncTransport"]

logger = logging.getLogger(__name__)

SOAP11_ENVELOPE = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_ENVELOPE = "http://www.w3.org/2003/05/soap-envelope"
ENVELOPE_VERSIONS = {SOAP11_ENVELOPE: "1.1", SOAP12_ENVELOPE: "1.2"}

_PROLOG = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->)*", re.S)
_XML_MEDIA = ("text/xml", "application/xml", "application/soap+xml")
_DTD_REFUSED = "the answer carries a DTD or entities (refused: entity expansion)"


@dataclass
class CallRecord:
    """What one operation call learns on its way: whether the request left, the HTTP status, the answer's envelope."""

    sent: bool = False
    status_code: int | None = None
    envelope: etree._Element | None = None


#: The most addresses a transport keeps parsed (a service has one or two).
_ADDRESSES_KEPT = 16

#: The call the running task makes, for a transport or plugin shared by concurrent calls (each task sees its own).
CURRENT_CALL: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("soap_call", default=None)


def _envelope_root(content: bytes) -> tuple[etree.QName | None, str | None]:
    """The root element's name, read from the start of ``content`` only; else ``(None, the parser's complaint)``."""
    parser = etree.XMLPullParser(
        events=("start",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        for offset in range(0, min(len(content), 256 * 1024), 16 * 1024):
            parser.feed(content[offset : offset + 16 * 1024])
            for _event, element in parser.read_events():
                return etree.QName(element), None
    except etree.XMLSyntaxError as exc:
        return None, str(exc.msg or "")
    return None, None


class GatewayAsyncTransport(AsyncTransport):
    """zeep's async transport over a gateway ``httpx.AsyncClient`` (from the factory), with the answer screened.

    ``AsyncTransport.__init__`` is deliberately not called: it would build its own ``httpx.Client`` (for WSDL
    loading) and ``httpx.AsyncClient`` outside the factory. Documents are served by :meth:`load` from ``documents``
    only; operations are posted through ``client``, whose size cap and deadline bound each answer. A transport made
    by :meth:`for_call` records into that call's :class:`CallRecord`; one made without a call records into the
    :data:`CURRENT_CALL` of the task posting (one transport then serves concurrent calls).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        upstream: str,
        documents: Mapping[str, bytes] | None = None,
        call: CallRecord | None = None,
    ) -> None:
        self.client = client
        self.wsdl_client = None
        self.cache = None
        self.load_timeout = None
        self.operation_timeout = None
        self.logger = logger
        self._close_session = False
        self.upstream = upstream
        self.call = call
        self._documents = dict(documents or {})
        #: Each address posted to, parsed once (httpx parses a URL given as text at every request).
        self._addresses: dict[str, httpx.URL] = {}

    def for_call(self, call: CallRecord) -> GatewayAsyncTransport:
        """This transport (same client, same documents) recording into ``call``."""
        bound = copy.copy(self)
        bound.call = call
        return bound

    def load(self, url: str) -> bytes:
        try:
            return self._documents[url]
        except KeyError:
            raise zeep.exceptions.TransportError(f"{url} was not fetched by the gateway") from None

    async def aclose(self) -> None:
        """The ``httpx.AsyncClient`` belongs to the caller: nothing to close here."""

    async def get(self, address: str, params: Any, headers: Any) -> Any:
        raise PermanentError("HTTP GET bindings are not supported", upstream=self.upstream)

    async def post(self, address: str, message: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """Post ``message``; the answer is read whole, within the client's size cap and deadline."""
        call = self.call if self.call is not None else CURRENT_CALL.get()
        if call is not None:
            call.sent = True
        with map_http_errors(self.upstream):
            response = await self.client.post(self._url(address), content=message, headers=dict(headers))
        if call is not None:
            call.status_code = response.status_code
        return response

    def _url(self, address: str) -> httpx.URL:
        url = self._addresses.get(address)
        if url is None:
            if len(self._addresses) >= _ADDRESSES_KEPT:
                self._addresses.clear()
            url = self._addresses[address] = httpx.URL(address)
        return url

    async def post_xml(self, address: str, envelope: etree._Element, headers: Mapping[str, str]) -> Any:
        message = etree_to_string(envelope)
        expected = etree.QName(envelope).namespace or ""
        response = await self.post(address, message, headers)
        self._screen(response, ENVELOPE_VERSIONS.get(expected, "1.1"))
        return self.new_response(response)

    def new_response(self, response: httpx.Response) -> requests.Response:
        """The answer as zeep reads it (a ``requests.Response``).

        zeep's own conversion also parses the answer's cookies into a jar nothing reads, and its charset, which zeep
        reads only to split a ``multipart/related`` (MTOM) answer into parts: each costs as much as the rest of the
        conversion. Here the cookies are parsed only when the answer sets some, and the charset only for a
        multipart answer (lxml reads an envelope's encoding from the XML itself).
        """
        converted = requests.Response()
        converted._content = response.content
        converted.status_code = response.status_code
        headers = response.headers
        converted.headers = headers  # type: ignore[assignment]  # zeep reads it as a mapping
        if "Set-Cookie" in headers:
            converted.cookies = response.cookies  # type: ignore[assignment]  # as zeep's own conversion does
        if "multipart/" in headers.get("Content-Type", "").lower():
            converted.encoding = response.encoding
        return converted

    def _screen(self, response: httpx.Response, version: str) -> None:
        """Refuse, before zeep parses it, an answer that is not a SOAP envelope of the version we spoke."""
        status = response.status_code
        media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        content = response.content
        if status in (401, 403):
            raise error_for_response(response, self.upstream) or AuthError("credentials refused")
        if not content.strip():
            if 200 <= status < 300:
                if status == 200:
                    raise BadResponseError("empty answer where a SOAP envelope was expected", upstream=self.upstream)
                return  # 202/204 and the like: accepted without an answer
            raise error_for_response(response, self.upstream) or BadResponseError("empty answer")
        if media == "multipart/related":
            return  # MTOM/XOP: zeep decodes the parts
        xml_media = media in _XML_MEDIA or media.endswith("+xml")
        if not xml_media or HTML_START.match(content[:4096]):
            if status >= 300:
                raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")
            shown = "an HTML page" if media == "text/html" or HTML_START.match(content[:4096]) else media
            raise BadResponseError(
                f"expected a SOAP envelope, got {one_line(shown or 'no content type', 60)}",
                upstream=self.upstream,
                status_code=status,
            )
        self._screen_envelope(response, version)

    def _screen_envelope(self, response: httpx.Response, version: str) -> None:
        """Refuse an XML answer carrying a DTD, not well-formed, not a SOAP envelope, or of the other version."""
        status = response.status_code
        content = response.content
        prolog = _PROLOG.match(content[:65536])
        rest = content[prolog.end() if prolog else 0 :]
        if rest[:9].upper() == b"<!DOCTYPE" or b"<!ENTITY" in content[:65536]:
            raise BadResponseError(_DTD_REFUSED, upstream=self.upstream, status_code=status)
        root, complaint = _envelope_root(content)  # libxml2 refuses entity amplification in other encodings too
        if root is None:
            lowered = (complaint or "").lower()
            if "entit" in lowered or "amplification" in lowered:
                raise BadResponseError(_DTD_REFUSED, upstream=self.upstream, status_code=status)
            raise BadResponseError("the answer is not well-formed XML", upstream=self.upstream, status_code=status)
        answered = ENVELOPE_VERSIONS.get(root.namespace or "")
        if answered is None or root.localname != "Envelope":
            if status >= 300 and status not in (400, 500):
                raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")
            raise BadResponseError(
                f"the answer is not a SOAP envelope (root element {root.localname} in namespace "
                f"{one_line(root.namespace or 'none', 60)})",
                upstream=self.upstream,
                status_code=status,
            )
        if answered != version:
            raise BadResponseError(
                f"a SOAP {answered} envelope answered a SOAP {version} request",
                upstream=self.upstream,
                status_code=status,
            )
        if status >= 300 and status not in (400, 500):
            raise error_for_response(response, self.upstream) or BadResponseError("unexpected answer")
