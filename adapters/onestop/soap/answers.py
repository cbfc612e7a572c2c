"""Reading an operation's answer: the payload element checked, parsed by zeep's own types, faults turned into errors.

:class:`AnswerCheck` is the zeep plugin that checks the answer's payload element and keeps the envelope in the
call's :class:`~adapters.onestop.soap.transport.CallRecord`; :class:`PayloadLeftToRead` lets zeep process the
answer without converting its payload; :func:`read_payload` parses that payload and :func:`fault_error` says what a
SOAP fault means (a business rejection, refused credentials, transient or not).
"""

from __future__ import annotations

from typing import Any

import zeep.exceptions
from lxml import etree
from zeep.helpers import serialize_object
from zeep.plugins import Plugin
from zeep.wsdl.messages.soap import DocumentMessage
from zeep.xsd.context import XmlParserContext

from adapters.errors import AuthError, BadResponseError, PermanentError, TransientError, UpstreamError
from adapters.onestop.soap.documents import ZEEP_SETTINGS
from adapters.onestop.soap.errors import SoapFaultError, one_line
from adapters.onestop.soap.mapping import SoapMapping
from adapters.onestop.soap.transport import CURRENT_CALL, CallRecord

__all__ = ["AnswerCheck", "PayloadLeftToRead", "fault_error", "read_payload"]

_SECURITY_FAULTS = frozenset(
    {"FailedAuthentication", "InvalidSecurity", "InvalidSecurityToken", "FailedCheck", "SecurityTokenUnavailable"}
)


def _body(envelope: etree._Element) -> etree._Element | None:
    """The envelope's ``Body`` (in the envelope's namespace), if it has one."""
    return next(envelope.iterchildren(f"{{{etree.QName(envelope).namespace}}}Body"), None)


def _expected_answer(operation: Any) -> etree.QName | None:
    """The element an operation's answer must carry in its Body (``None``: no single expected element)."""
    message = getattr(operation, "output", None)
    body = getattr(message, "body", None)
    if body is None or getattr(message, "_is_body_wrapped", False):
        return None
    qname = getattr(body, "qname", None)
    return etree.QName(qname) if qname is not None else None


class AnswerCheck(Plugin):
    """Checks the parsed answer's payload element and keeps the envelope in ``call`` (when given; else in the
    :data:`~adapters.onestop.soap.transport.CURRENT_CALL` of the task)."""

    def __init__(self, upstream: str, call: CallRecord | None = None) -> None:
        self.upstream = upstream
        self.call = call

    def ingress(self, envelope: etree._Element, http_headers: Any, operation: Any) -> tuple[Any, Any]:
        call = self.call if self.call is not None else CURRENT_CALL.get()
        if call is not None:
            call.envelope = envelope
        body = _body(envelope)
        if body is None:
            raise BadResponseError("the SOAP answer has no Body", upstream=self.upstream)
        children = [child for child in body if isinstance(child.tag, str)]
        if not children or etree.QName(children[0]).localname == "Fault":
            return envelope, http_headers
        expected = _expected_answer(operation)
        found = etree.QName(children[0])
        if expected is not None and (found.namespace, found.localname) != (expected.namespace, expected.localname):
            if found.localname == expected.localname:
                raise BadResponseError(
                    f"the answer's {found.localname} is in namespace {one_line(found.namespace or 'none', 60)}, "
                    f"expected {one_line(expected.namespace or 'none', 60)}",
                    upstream=self.upstream,
                )
            raise BadResponseError(
                f"unexpected answer element {found.localname} (expected {expected.localname})", upstream=self.upstream
            )
        return envelope, http_headers


class PayloadLeftToRead:
    """A zeep operation as zeep's processing of an answer sees it, without the conversion of the answer's payload.

    Handed to ``binding.process_reply`` in place of ``operation``: zeep still parses the answer, applies the
    plugins (:class:`AnswerCheck` keeps the envelope), raises its faults and checks the envelope's name, but does
    not turn the payload (and the answer's SOAP headers) into its unwrapped value objects, which nothing reads:
    :func:`read_payload` parses the payload by the same types from the kept envelope.
    """

    __slots__ = ("_envelope", "_operation")

    def __init__(self, operation: Any) -> None:
        self._operation = operation
        self._envelope = etree.QName(operation.nsmap["soap-env"], "Envelope").text

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operation, name)

    def process_reply(self, envelope: etree._Element) -> None:
        if envelope.tag != self._envelope:
            raise zeep.exceptions.XMLSyntaxError(
                f"the answer's root element is {one_line(str(envelope.tag), 120)}, not {self._envelope}"
            )


def read_payload(operation: Any, envelope: etree._Element | None, *, upstream: str) -> dict[str, Any]:
    """The answer's payload as a dict (their names), parsed by zeep's own types without zeep's unwrapping."""
    if envelope is None:  # accepted without an answer (202)
        return {}
    body = _body(envelope)
    children = [child for child in body if isinstance(child.tag, str)] if body is not None else []
    message = operation.output
    if not children or message is None or message.body is None:
        return {}
    context = XmlParserContext(settings=ZEEP_SETTINGS)
    try:
        if isinstance(message, DocumentMessage) and message._is_body_wrapped:
            value = message.body.parse(body, message.wsdl.types, context=context)
        else:
            value = message.body.parse(children[0], message.wsdl.types, context=context)
    except (zeep.exceptions.Error, TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise BadResponseError(
            f"the {operation.name} answer does not match the service description: {one_line(str(exc), 160)}",
            upstream=upstream,
        ) from exc
    data = serialize_object(value, dict)
    return data if isinstance(data, dict) else {}


def _local(code: Any) -> str:
    if code is None:
        return ""
    text = code.localname if isinstance(code, etree.QName) else str(code)
    return text.rsplit("}", 1)[-1].rsplit(":", 1)[-1].strip()


def _business_detail(fault: zeep.exceptions.Fault, mapping: SoapMapping) -> tuple[str | None, str | None]:
    """``(MaLoi, MoTa)`` of the fault's ``LoiNghiepVu`` detail (their names), when it carries one."""
    detail = fault.detail if isinstance(fault.detail, etree._Element) else None
    if detail is None:
        return None, None
    wanted = mapping.name("LoiNghiepVu")
    for element in detail.iter(etree.Element):
        if etree.QName(element).localname == wanted:
            values = {etree.QName(child).localname: (child.text or "").strip() for child in element}
            return values.get(mapping.name("MaLoi")) or None, values.get(mapping.name("MoTa")) or None
    return None, None


def fault_error(
    fault: zeep.exceptions.Fault, operation: str, *, mapping: SoapMapping, upstream: str, status_code: int | None
) -> UpstreamError:
    """The error a SOAP fault to ``operation`` means (answered with HTTP ``status_code``)."""
    codes = [_local(fault.code), *(_local(code) for code in fault.subcodes or ())]
    business_code, business_message = _business_detail(fault, mapping)
    text = one_line(fault.message or "", 160)
    status = status_code
    if business_code:
        described = f": {one_line(business_message, 160)}" if business_message else ""
        return SoapFaultError(
            f"{operation} refused ({business_code}){described}",
            upstream=upstream,
            status_code=status,
            fault_code=codes[0] or None,
            business_code=business_code,
            business_message=business_message,
        )
    shown = f": {text}" if text else ""
    if any(code in _SECURITY_FAULTS for code in codes):
        return AuthError(f"WS-Security credentials refused{shown}", upstream=upstream, status_code=status)
    if "VersionMismatch" in codes:
        return BadResponseError(
            "the agency refused the SOAP version (VersionMismatch)", upstream=upstream, status_code=status
        )
    if codes[0] in ("Server", "Receiver") or (not codes[0] and (status or 500) >= 500):
        return TransientError(f"SOAP fault {codes[0] or 'without code'}{shown}", upstream=upstream, status_code=status)
    return PermanentError(f"SOAP fault {codes[0] or 'without code'}{shown}", upstream=upstream, status_code=status)
