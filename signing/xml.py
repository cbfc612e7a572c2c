"""XML-DSig and XAdES signatures on XML forms (tờ khai điện tử).

Every ds:Signature of a document is checked for its mathematics, for the trust in its signer's certificate and for
how much of the document it covers; the report says so, and only the content a valid signature verifiably signed is
handed on. Three libraries, one job each:

* :mod:`adapters.xmlguard` parses the bytes with the hardened parser and refuses any DTD or entity declaration, so
  nothing below ever sees XXE or entity-expansion tricks;
* signxml checks only the signature *mathematics*: it is always given the signer's certificate explicitly
  (``x509_cert``), so its own ``certifi``-based chain validation never runs, and its algorithm allow-list is derived
  from :mod:`signing.policy`;
* pyhanko-certvalidator decides trust exactly as for PDF and CMS signatures: the store's one
  :class:`~pyhanko.sign.validation.policy_decl.SignatureValidationSpec`, pyHanko's key-usage check and its mapping of
  path-validation errors onto ETSI sub-indications.

Signature wrapping is defeated twice. Content reaches callers only as what signxml returns as signed (the canonical
bytes that were digested, :meth:`XMLValidation.signed_content`), never as the original tree. And a document is
``valid`` only when its intact signatures together cover all of it: an element outside every signed reference (an
attacker's replacement content, with the signed original moved aside) makes ``covers_whole_document`` false, so the
verdict is never ``valid``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import cryptography.exceptions
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from lxml import etree
from pyhanko.sign.ades.report import AdESSubIndic
from pyhanko.sign.validation.generic_cms import validate_cert_usage
from pyhanko.sign.validation.policy_decl import bootstrap_validation_data_handlers
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.path import ValidationPath
from signxml import SignatureConfiguration, VerifyResult, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput
from signxml.xades import XAdESSignatureConfiguration, XAdESVerifier

from adapters.xmlguard import XMLRefusedError, hardened_parser, parse_xml

from .adesval import path_lacks_revocation, revocation_unknown
from .countersign import counter_signature_problem
from .evidence import chain_labels, revocation_state, translate
from .identity import describe_name, signer_from_certificate
from .ltv import require_revocation_within_validity
from .policy import weak_digest_reason, weak_key_reason
from .reasons import explain, one_line
from .report import (
    Format,
    Indication,
    SignatureReport,
    SignatureResult,
    Signer,
    SubIndication,
    Verdict,
    failed_report,
    format_failure,
)
from .trust import TrustStore

logger = logging.getLogger(__name__)

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
XADES_NAMESPACES = frozenset({"http://uri.etsi.org/01903/v1.3.2#", "http://uri.etsi.org/01903/v1.4.1#"})
_SIGNATURE = f"{{{DS_NS}}}Signature"
_OBJECT = f"{{{DS_NS}}}Object"
_KEY_INFO = f"{{{DS_NS}}}KeyInfo"
_SIGNATURE_DATA_NAMESPACES = XADES_NAMESPACES | {DS_NS}
_NS = {"ds": DS_NS}

#: Bounds on work an (untrusted) document can ask for: signxml re-serialises the document for every reference.
MAX_SIGNATURES = 32
MAX_REFERENCES = 32
MAX_KEYINFO_CERTS = 16


def _weak_algorithm_reason(uri: str) -> str | None:
    """Why an XML-DSig algorithm URI (``…#rsa-sha1``, ``…#sha1``, ``…#md5``) is below the national minimum."""
    fragment = uri.rsplit("#", 1)[-1]
    for token in fragment.lower().split("-"):
        reason = weak_digest_reason(token)
        if reason is not None:
            return f"{reason} ({uri})"
    return None


# The algorithms signxml may verify at all: no HMAC (trust comes from certificates), nothing the policy calls weak.
_SIGNATURE_METHODS = frozenset(
    m for m in SignatureMethod if not m.name.startswith("HMAC") and _weak_algorithm_reason(m.value) is None
)
_DIGEST_ALGORITHMS = frozenset(d for d in DigestAlgorithm if _weak_algorithm_reason(d.value) is None)


class _SignedPropertiesError(Exception):
    """The XAdES signed properties do not identify the signer's certificate (checked by signxml)."""


class _PinnedSignature:
    """Makes a signxml verifier check the ``signature_index``-th ds:Signature in document order, not the first."""

    signature_index: int = 0

    def _get_signature(self, root: etree._Element) -> etree._Element:
        for index, element in enumerate(root.iter(_SIGNATURE)):
            if index == self.signature_index:
                return element
        raise InvalidInput("signature element not found")


class _XMLDSigVerifier(_PinnedSignature, XMLVerifier):
    pass


class _XAdESVerifier(_PinnedSignature, XAdESVerifier):
    def _verify_signed_properties(self, verify_result: VerifyResult) -> etree._Element:
        # Keep the SigningCertificate check's failures apart from a reference digest mismatch (both InvalidDigest).
        try:
            return super()._verify_signed_properties(verify_result)
        except Exception as exc:
            raise _SignedPropertiesError(str(exc)) from exc


@dataclass(frozen=True)
class SignedPart:
    """One signed reference: its URI and the canonical bytes that were digested (the only trustworthy content)."""

    uri: str
    data: bytes


@dataclass(frozen=True)
class XMLValidation:
    """The report, and for each of its signatures the content that signature verifiably covers."""

    report: SignatureReport
    signed_parts: tuple[tuple[SignedPart, ...], ...] = ()

    def signed_content(self) -> tuple[SignedPart, ...]:
        """Content signed by a ``valid`` signature; a document that is not valid as a whole yields nothing."""
        if self.report.verdict is not Verdict.VALID:
            return ()
        return tuple(part for parts in self.signed_parts for part in parts)


@dataclass(frozen=True)
class _Signer:
    """A certificate from KeyInfo, both parsed forms, and the facts about it every report needs."""

    cert: x509.Certificate
    asn1: asn1_x509.Certificate
    ca: bool
    weak_key: str | None
    signer: Signer
    issuer: str


@functools.lru_cache(maxsize=256)
def _load_certificate(der: bytes) -> _Signer:
    """A KeyInfo certificate, parsed once per process: the forms of one signer recur across documents (the objects
    are only read, never changed)."""
    asn1 = asn1_x509.Certificate.load(der)
    return _Signer(
        cert=x509.load_der_x509_certificate(der),
        asn1=asn1,
        ca=bool(asn1.ca),
        weak_key=weak_key_reason(asn1.public_key),
        signer=signer_from_certificate(asn1),
        issuer=describe_name(asn1.issuer),
    )


def _result(
    indication: Indication,
    sub: SubIndication | None,
    *,
    signer: _Signer | None = None,
    path: ValidationPath | None = None,
    reason: str | None = None,
) -> SignatureResult:
    result = SignatureResult(indication=indication, sub_indication=sub, warnings=(reason,) if reason else ())
    if signer is None:
        return result
    return replace(
        result,
        signer=signer.signer,
        issuer=signer.issuer,
        chain=chain_labels(path, signer.asn1),
    )


def _keyinfo_certificates(signature: etree._Element) -> list[_Signer]:
    """The certificates in the signature's KeyInfo (signer and chain), unverified."""
    nodes = signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS)
    if len(nodes) > MAX_KEYINFO_CERTS:
        raise InvalidInput("too many certificates in KeyInfo")
    certs = []
    for node in nodes:
        try:
            der = base64.b64decode("".join((node.text or "").split()), validate=True)
            certs.append(_load_certificate(der))
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"unreadable certificate in KeyInfo: {explain(exc)}") from exc
    return certs


def _is_xades(signature: etree._Element) -> bool:
    return any(
        etree.QName(child).namespace in XADES_NAMESPACES and etree.QName(child).localname == "QualifyingProperties"
        for obj in signature.findall("ds:Object", _NS)
        for child in obj
        if isinstance(child.tag, str)
    )


def _signature_algorithms(signature: etree._Element) -> list[str]:
    uris = signature.xpath(
        "ds:SignedInfo/ds:SignatureMethod/@Algorithm | ds:SignedInfo/ds:Reference/ds:DigestMethod/@Algorithm",
        namespaces=_NS,
    )
    return [str(uri) for uri in uris]


def _verify_crypto(
    data: bytes, index: int, xades: bool, candidates: list[_Signer], *, schema: bool = True
) -> tuple[_Signer, list[VerifyResult], XMLVerifier]:
    """Check the signature value and every reference digest with signxml; the certificate is only a key holder.

    Each candidate certificate (end-entity ones from KeyInfo) is tried in turn; signxml raises on failure.
    """
    failure: Exception | None = None
    for candidate in candidates:
        verifier = _XAdESVerifier() if xades else _XMLDSigVerifier()
        verifier.signature_index = index
        config_class = XAdESSignatureConfiguration if xades else SignatureConfiguration
        config = config_class(
            expect_references=True,
            signature_methods=_SIGNATURE_METHODS,
            digest_algorithms=_DIGEST_ALGORITHMS,
            # Validity periods are certvalidator's business: pin signxml's own check inside the validity window.
            verification_time=candidate.cert.not_valid_before_utc,
        )
        try:
            results = verifier.verify(
                data, x509_cert=candidate.cert, parser=hardened_parser(), expect_config=config, validate_schema=schema
            )
        except (InvalidDigest, InvalidCertificate):
            raise
        except cryptography.exceptions.InvalidSignature as exc:
            failure = exc  # not this certificate's key (or a broken value): try the next candidate
            continue
        return candidate, list(results) if isinstance(results, list) else [results], verifier
    assert failure is not None
    raise failure


def _is_machinery(signed: etree._Element | None) -> bool:
    """KeyInfo and XAdES properties are signed too, but they are the signature's own data, not content."""
    if signed is None:
        return False
    return signed.tag == _KEY_INFO or etree.QName(signed).namespace in XADES_NAMESPACES


def _signing_time(results: list[VerifyResult]) -> datetime | None:
    """The XAdES SigningTime claimed in the verified SignedSignatureProperties (a claim, not a proof)."""
    for result in results:
        props = getattr(result, "signed_properties", None)
        for element in props if props is not None else ():
            if isinstance(element.tag, str) and etree.QName(element).localname == "SigningTime":
                try:
                    value = datetime.fromisoformat((element.text or "").strip())
                except ValueError:
                    return None
                return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _covers_whole_document(root: etree._Element, covered: set[etree._Element]) -> bool:
    """Whether every element of the document lies inside what the document's intact signatures signed.

    Allowed outside the signed references: bare containers (no attributes, no text) around signed parts, and the
    ds:Signature elements themselves (each is validated on its own), whose unsigned ds:Object content may only be
    XML-DSig/XAdES data (unsigned properties, timestamps). Anything else is unsigned content: an attacker's replacement
    for content moved aside (signature wrapping), content slipped into an enveloped signature (which its own digest
    leaves out), or a part nobody signed.
    """

    def signature_data(element: etree._Element) -> bool:
        if not isinstance(element.tag, str) or element in covered:
            return True
        if etree.QName(element).namespace not in _SIGNATURE_DATA_NAMESPACES:
            return False
        if element.tag == _OBJECT and (element.text or "").strip():
            return False
        return all(signature_data(child) for child in element)

    def signatures_ok(element: etree._Element) -> bool:
        return all(
            signature_data(obj) for signature in element.iter(_SIGNATURE) for obj in signature.iterchildren(_OBJECT)
        )

    def ok(element: etree._Element) -> bool:
        if not isinstance(element.tag, str):
            return True  # comments and processing instructions are not content (c14n drops them)
        if element in covered or element.tag == _SIGNATURE:
            return signatures_ok(element)
        children = [child for child in element if isinstance(child.tag, str)]
        if element.attrib or (element.text or "").strip() or not children:
            return False
        if any((child.tail or "").strip() for child in element):
            return False
        return all(ok(child) for child in children)

    return ok(root)


async def _validate_certificate(
    signer: _Signer, others: list[_Signer], store: TrustStore, timing: ValidationTimingInfo
) -> tuple[AdESSubIndic | None, ValidationPath | None]:
    """The PDF/CMS trust decision for the signer's certificate: (failure sub-indication or None, path).

    A success is remembered in the store's :class:`~signing.trust.PathCache` for the same signer and the same
    document-supplied certificates, so many forms by one signer build and check the path once.
    """
    key = store.path_cache.key(signer.asn1, [other.asn1 for other in others])
    cached = store.path_cache.get(key, timing.validation_time)
    if isinstance(cached, ValidationPath):
        return None, cached
    handlers = bootstrap_validation_data_handlers(store.spec, timing)
    context = store.cert_policy.build_validation_context(timing, handlers)
    context.certificate_registry.register_multiple([other.asn1 for other in others])
    paths = context.path_builder.async_build_paths_lazy(signer.asn1)
    outcome = await validate_cert_usage(signer.asn1, context, store.spec.key_usage_settings, paths)
    if outcome.success_result is not None:
        store.path_cache.put(key, timing.validation_time, outcome.success_result)
        return None, outcome.success_result
    return outcome.error_subindic, outcome.error_path


@dataclass(frozen=True)
class _Outcome:
    """One signature's result, its signed content, and the elements it covers (when its cryptography held)."""

    result: SignatureResult
    parts: tuple[SignedPart, ...] = ()
    covered: tuple[etree._Element, ...] | None = None


def _failed(indication: Indication, sub: SubIndication, reason: str, signer: _Signer | None = None) -> _Outcome:
    return _Outcome(_result(indication, sub, signer=signer, reason=reason))


async def _validate_signature(
    data: bytes,
    root: etree._Element,
    index: int,
    signature: etree._Element,
    store: TrustStore,
    timing: ValidationTimingInfo,
) -> _Outcome:
    if len(signature.findall("ds:SignedInfo/ds:Reference", _NS)) > MAX_REFERENCES:
        return _Outcome(format_failure("too many references in the signature"))
    xades = _is_xades(signature)
    try:
        certs = _keyinfo_certificates(signature)
    except InvalidInput as exc:
        return _Outcome(format_failure(str(exc)))

    # The national algorithm minimum: refused here, so signxml never has to accept SHA-1/MD5.
    for uri in _signature_algorithms(signature):
        reason = _weak_algorithm_reason(uri)
        if reason:
            first = certs[0] if certs else None
            return _failed(Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE, reason, first)
    if not certs:
        reason = "the signature's KeyInfo carries no X.509 certificate"
        return _failed(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND, reason)
    candidates = [c for c in certs if not c.ca] or certs

    try:
        signer, results, verifier = _verify_crypto(data, index, xades, candidates)
    except etree.DocumentInvalid as exc:
        return _off_schema(data, index, xades, candidates, exc)
    except _SignedPropertiesError as exc:
        reason = f"XAdES signing certificate: {exc}"
        return _failed(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND, reason, candidates[0])
    except InvalidDigest as exc:
        return _failed(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE, str(exc), candidates[0])
    except InvalidCertificate as exc:
        return _Outcome(format_failure(f"signature could not be processed: {exc}"))
    except cryptography.exceptions.InvalidSignature as exc:
        if all(c.ca for c in certs):
            # Only CA certificates to try, and none verifies: the signer's own certificate is not in the KeyInfo.
            return _failed(Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND, _missing_signer(certs))
        return _failed(Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE, _crypto_reason(exc), candidates[0])
    except ValueError as exc:  # signxml's InvalidInput, unknown algorithms, bad base64
        return _Outcome(format_failure(f"signature could not be processed: {exc}"))

    # Only signxml's verified output is handed on as content. The references, resolved in our tree by signxml's own
    # rules, only tell which elements are covered (for the whole-document check), never what they contain.
    references = signature.findall("ds:SignedInfo/ds:Reference", _NS)
    covered = tuple(verifier._resolve_reference(root, reference) for reference in references)
    parts = tuple(
        SignedPart(uri=reference.get("URI", ""), data=result.signed_data)
        for reference, result in zip(references, results, strict=True)
        if not _is_machinery(result.signed_xml)
    )
    problem = counter_signature_problem(signature, references, covered)
    if problem is not None:
        return _failed(Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE, problem, signer)
    weak = signer.weak_key
    if weak:
        failed = _result(Indication.TOTAL_FAILED, SubIndication.CRYPTO_CONSTRAINTS_FAILURE, signer=signer, reason=weak)
        return _Outcome(failed, covered=covered)
    others = [c for c in certs if c is not signer]
    result = await _trusted_result(signer, others, store, timing)
    return _Outcome(replace(result, signing_time=_signing_time(results)), parts, covered)


def _off_schema(
    data: bytes, index: int, xades: bool, candidates: list[_Signer], invalid: etree.DocumentInvalid
) -> _Outcome:
    """A signature the XML Signature (or XAdES) schema refuses: refused all the same, but a changed reference or a
    broken value, when the check without the schema finds one, is said first (what a clerk needs to know)."""
    detail = invalid.error_log.last_error.message if invalid.error_log.last_error else str(invalid)
    reason = (
        f"the signature does not follow the {'XAdES' if xades else 'XML Signature'} schema ({one_line(detail, 160)})"
    )
    try:
        _verify_crypto(data, index, xades, candidates, schema=False)
    except InvalidDigest as exc:
        result = _result(Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE, signer=candidates[0], reason=str(exc))
        return _Outcome(result.with_warnings(reason))
    except cryptography.exceptions.InvalidSignature as exc:
        result = _result(
            Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE, signer=candidates[0], reason=_crypto_reason(exc)
        )
        return _Outcome(result.with_warnings(reason))
    except Exception:  # noqa: BLE001 - nothing more to learn: the schema's reason stands
        logger.debug("XML signature %d off schema and unreadable without it", index)
    return _failed(Indication.INDETERMINATE, SubIndication.FORMAT_FAILURE, reason, candidates[0])


def _missing_signer(certs: list[_Signer]) -> str:
    names = ", ".join(repr(c.signer.common_name or c.issuer or "?") for c in certs)
    return (
        "the signer's certificate is missing: the signature's KeyInfo carries only CA certificates "
        f"({names}), whose keys do not verify the signature"
    )


def _crypto_reason(exc: Exception) -> str:
    """signxml's message for a signature value that does not verify, never empty (it ends in the empty text of
    cryptography's exception)."""
    text = str(exc).strip().rstrip(":").strip()
    if not text or text == "Signature verification failed":
        return "Signature verification failed: the signature value does not verify with the signer's certificate"
    return text


async def _trusted_result(
    signer: _Signer, others: list[_Signer], store: TrustStore, timing: ValidationTimingInfo
) -> SignatureResult:
    """The result of a signature whose cryptography held: the trust decision on the signer's certificate."""
    subindic, path = await _validate_certificate(signer, others, store, timing)
    indication, sub = (Indication.TOTAL_PASSED, None) if subindic is None else translate(subindic)
    reason = f"certificate validation: {subindic.standard_name}" if subindic is not None else None
    result = replace(
        _result(indication, sub, signer=signer, path=path, reason=reason),
        revocation=revocation_state(sub, subindic is None),
    )
    # The same long-term rule as for PDF and CMS: revocation data about an expired certificate counts only if it
    # was issued while the certificate was valid.
    result = require_revocation_within_validity(
        result,
        path,
        validation_time=timing.validation_time,
        crls=store.spec.local_knowledge.known_crls,
        ocsps=store.spec.local_knowledge.known_ocsps,
    )
    if sub is SubIndication.CERTIFICATE_CHAIN_GENERAL_FAILURE and await path_lacks_revocation(
        signer.asn1, [other.asn1 for other in others], store.spec, timing
    ):
        return revocation_unknown(result)
    return result


async def validate_xml_content(data: bytes, store: TrustStore, *, file: str = "") -> XMLValidation:
    """Validate every ds:Signature in ``data``: the report, plus the content each signature verifiably covers."""
    try:
        return await _validate(data, store, file)
    except Exception as exc:  # noqa: BLE001 - the validation boundary: an error is never `valid`
        logger.warning("XML signature validation failed with %s", type(exc).__name__)
        return XMLValidation(failed_report(file, Format.XMLDSIG, f"validator error: {type(exc).__name__}"))


async def validate_xml(data: bytes, store: TrustStore, *, file: str = "") -> SignatureReport:
    """The signature report for an XML document (XML-DSig or XAdES); never raises."""
    return (await validate_xml_content(data, store, file=file)).report


def _split_trailing(data: bytes, exc: XMLRefusedError) -> int | None:
    """Where the document ends when the parser found content after the root element (trailing text, say): the
    offset of that content, if the part before it is a well-formed document on its own; else ``None``."""
    cause = exc.__cause__
    if not isinstance(cause, etree.XMLSyntaxError) or "Extra content at the end" not in str(cause.msg or ""):
        return None
    line, column = cause.position
    lines = data.split(b"\n")
    if not 1 <= line <= len(lines) or column < 1:
        return None
    offset = sum(len(previous) + 1 for previous in lines[: line - 1]) + column - 1
    try:
        parse_xml(data[:offset])
    except XMLRefusedError:
        return None
    return offset


async def _validate(data: bytes, store: TrustStore, file: str) -> XMLValidation:
    trailing = b""
    try:
        root = parse_xml(data)
    except XMLRefusedError as exc:
        end = _split_trailing(data, exc)
        if end is None:
            return XMLValidation(failed_report(file, Format.XMLDSIG, str(exc)))
        data, trailing = data[:end], data[end:]
        root = parse_xml(data)
    validation = await _validate_tree(data, root, store, file)
    if not trailing or not validation.report.signatures:
        return validation
    reason = f"{len(trailing)} bytes after the root element are not covered by any signature"
    results = [
        replace(result, covers_whole_document=False).with_warnings(reason) for result in validation.report.signatures
    ]
    return XMLValidation(replace(validation.report, signatures=tuple(results)), validation.signed_parts)


async def _validate_tree(data: bytes, root: etree._Element, store: TrustStore, file: str) -> XMLValidation:
    signatures = list(root.iter(_SIGNATURE))
    if not signatures:
        return XMLValidation(SignatureReport(file=file, format=Format.NONE))
    if len(signatures) > MAX_SIGNATURES:
        return XMLValidation(failed_report(file, Format.XMLDSIG, "too many signatures in one document"))

    xades = any(_is_xades(signature) for signature in signatures)
    timing = ValidationTimingInfo.now()
    outcomes: list[_Outcome] = []
    for index, signature in enumerate(signatures):
        try:
            outcomes.append(await _validate_signature(data, root, index, signature, store, timing))
        except Exception as exc:  # noqa: BLE001 - one unreadable signature must not hide the others
            logger.warning("XML signature %d could not be validated: %s", index, type(exc).__name__)
            outcomes.append(_Outcome(format_failure(f"signature could not be processed: {type(exc).__name__}")))

    # The document is whole when the intact signatures together cover it. A part covered only by a signature that is
    # not valid itself still keeps the document from being valid, since every signature must be valid for that.
    covered = {element for outcome in outcomes for element in outcome.covered or ()}
    whole = _covers_whole_document(root, covered)
    results = [
        outcome.result
        if whole or outcome.covered is None
        else replace(outcome.result, covers_whole_document=False).with_warnings(
            "part of the document is not covered by any signature"
        )
        for outcome in outcomes
    ]
    return XMLValidation(
        SignatureReport(file=file, format=Format.XADES if xades else Format.XMLDSIG, signatures=tuple(results)),
        tuple(outcome.parts for outcome in outcomes),
    )
