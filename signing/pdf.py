"""PAdES: every signature embedded in a PDF, checked for trust and for what changed after it was applied.

pyHanko's ETSI AdES validation (``pyhanko.sign.validation.ades``) decides each signature's indication with the
store's one :class:`SignatureValidationSpec`. This module adds what is specific to PDF:

* the revocation data the file carries (the Document Security Store and Adobe's revocation-info-archival
  attribute) joins the store's own CRLs/OCSP responses;
* coverage and difference analysis: the signed byte range must cover the whole signed revision, and every later
  incremental update must pass pyHanko's difference analysis and the signer's DocMDP permission. Between two
  signatures, form filling is allowed (the later signature covers it: an agency countersigning a form the citizen
  filled and signed); after the last signature only validation data may be added (DSS, document timestamps, as
  :mod:`signing.pdfdiff` rates them). A form
  field changed after the last signature, or anything else (a swapped page content stream or XObject: a "shadow"
  attack), makes the signature ``modified``, the changed fields named in its warnings;
* bytes after the last ``%%EOF`` that no signature covers make ``covers_whole_document`` false.

Before anything is parsed, an over-long hex string (a ``/Contents`` of many megabytes, which the PDF parser would
expand many times over in memory) is refused (:mod:`signing.limits`). A file that carries a signature dictionary
but yields no readable signature is a ``FORMAT_FAILURE``, never unsigned.

Malformed files never raise: a signature that cannot be processed is ``INDETERMINATE``/``FORMAT_FAILURE``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from asn1crypto import cms, crl, ocsp, x509
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import NonexistentAttributeError, find_unique_cms_attribute
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import LocalKnowledge, PdfSignatureValidationSpec, SignatureValidationSpec
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from .adesval import validate_signed_data
from .limits import carries_pdf_signature, oversized_hex_string, trailing_bytes_after_eof
from .lta import with_document_timestamps
from .pdfdiff import DIFF_POLICY
from .reasons import explain
from .report import Format, Indication, SignatureReport, SignatureResult, SubIndication, failed_report, format_failure
from .trust import TrustStore

logger = logging.getLogger(__name__)

#: The most a later incremental update may do without invalidating an earlier signature when a later signature
#: covers it: add signatures, fill in form fields, add DSS data and document timestamps. Annotations and anything
#: else count as modification.
ALLOWED_MODIFICATION = ModificationLevel.FORM_FILLING
#: The most that may follow the last signature, which nobody vouches for: validation data (DSS, document timestamps).
ALLOWED_AFTER_LAST_SIGNATURE = ModificationLevel.LTA_UPDATES

#: The signature types (``/SubFilter``) this validator understands.
SUPPORTED_SUBFILTERS = frozenset({"/adbe.pkcs7.detached", "/ETSI.CAdES.detached"})


async def validate_pdf(data: bytes, store: TrustStore, *, file: str = "") -> SignatureReport:
    """The signature report for a PDF: one result per signature (``/Sig``), in signing order."""
    limit = store.limits.max_signature_contents_hex
    oversized = oversized_hex_string(data, limit)
    if oversized is not None:
        reason = (
            f"a hex string at byte {oversized} is longer than the {limit / (1024 * 1024):g} MiB "
            "allowed for a signature's /Contents; the file was not parsed"
        )
        return failed_report(file, Format.PADES, reason)
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted:
            # Permission-only encryption (an empty user password) is common: open it when that is all it takes.
            with contextlib.suppress(Exception):
                reader.decrypt(b"")
        entries, any_signature = _signatures(reader)
    except Exception as exc:  # noqa: BLE001 - the file-level boundary: an unreadable PDF is a format failure
        return failed_report(file, Format.PADES, f"not a readable PDF ({_brief(exc)})")
    if not entries:
        if not any_signature and carries_pdf_signature(data):
            return failed_report(file, Format.PADES, "the file carries a signature dictionary that cannot be read")
        return SignatureReport(file=file, format=Format.PADES)
    file_spec, file_warnings = _with_file_revinfo(store.spec, reader)
    spec = PdfSignatureValidationSpec(file_spec, diff_policy=DIFF_POLICY)
    timing = ValidationTimingInfo.now()
    checked: list[tuple[SignatureResult, EmbeddedPdfSignature | None, dict[str, Any] | None]] = []
    for entry in entries:
        if isinstance(entry, SignatureResult):
            checked.append((entry, None, None))
            continue
        try:
            result, integrity = await _validate_signature(entry, spec, timing, store)
        except Exception as exc:  # noqa: BLE001 - the per-signature boundary: an error is never `valid`
            # Only the exception type is logged: messages may quote document content.
            logger.warning("PDF signature could not be validated: %s", type(exc).__name__)
            result = format_failure(f"signature {entry.field_name!r} could not be processed: {_brief(exc)}")
            integrity = None
        checked.append((result.with_warnings(*file_warnings), entry, integrity))
    results = _after_last_signature(checked)
    results = _uncovered_trailing_bytes(data, results, [sig for _, sig, _ in checked if sig is not None])
    return SignatureReport(file=file, format=Format.PADES, signatures=tuple(results))


def _after_last_signature(
    checked: list[tuple[SignatureResult, EmbeddedPdfSignature | None, dict[str, Any] | None]],
) -> list[SignatureResult]:
    """The results, every one ``modified`` when the last signature was followed by more than validation data: such a
    change (a form field's value or appearance) is covered by no signature at all."""
    results = [result for result, _, _ in checked]
    ordered = [(_revision(sig), integrity) for _, sig, integrity in checked if sig is not None]
    if not ordered or len(ordered) < len(checked):
        # No readable signature, or one that could not be read at all (its place in the order is unknown):
        # the document is not valid anyway, and the readable ones keep their own analysis.
        return results
    _, integrity = max(ordered, key=lambda pair: pair[0])
    if integrity is None:
        return results  # the last signature could not be analysed: it is a failure already
    diff = integrity.get("diff_result")
    level = getattr(diff, "modification_level", None)
    if not isinstance(level, ModificationLevel) or level <= ALLOWED_AFTER_LAST_SIGNATURE:
        return results  # nothing after it, validation data only, or a suspicious change already reported
    fields = sorted(getattr(diff, "changed_form_fields", ()) or ())
    what = ", ".join(repr(name) for name in fields) if fields else "form fields"
    reason = f"{level.name}: {what} changed after the last signature, which no signature covers"
    return [result if result.modified_after_signing else _modified(result, reason) for result in results]


def _revision(sig: EmbeddedPdfSignature) -> int:
    try:
        return sig.signed_revision
    except Exception:  # noqa: BLE001 - an unreadable signature: its revision is unknown
        return -1


def _uncovered_trailing_bytes(
    data: bytes, results: list[SignatureResult], signatures: list[EmbeddedPdfSignature]
) -> list[SignatureResult]:
    """The results, with ``covers_whole_document`` false when bytes after the last ``%%EOF`` escape every signature."""
    trailing = trailing_bytes_after_eof(data)
    if not trailing:
        return results
    ends = []
    for sig in signatures:
        with contextlib.suppress(Exception):
            ends.append(sig.byte_range[2] + sig.byte_range[3])
    if ends and max(ends) >= len(data):
        return results
    reason = f"{trailing} bytes after the last %%EOF are not covered by any signature"
    return [_not_whole_document(result).with_warnings(reason) for result in results]


def _signatures(reader: PdfFileReader) -> tuple[list[EmbeddedPdfSignature | SignatureResult], bool]:
    """Every filled ``/Sig`` field: its signature, or a ``FORMAT_FAILURE`` result when it cannot be read; and whether
    any signature at all (document timestamps included) was found.

    pyHanko's ``embedded_regular_signatures`` fails as a whole on one unreadable signature and silently skips
    unsupported ones; the fields it missed are read one by one here so that each is reported.
    """
    found: list[EmbeddedPdfSignature | SignatureResult] = []
    seen: set[str] = set()
    try:
        found.extend(reader.embedded_regular_signatures)
        seen = {sig.field_name for sig in reader.embedded_signatures}  # document timestamps included
    except Exception:  # noqa: BLE001 - fall back to reading the fields one by one
        found = []
    for name, _value, field in enumerate_sig_fields(reader, filled_status=True):
        if name in seen:
            continue
        try:
            sig = EmbeddedPdfSignature(reader, field, name)
            kind = sig.sig_object_type
            subfilter = sig.sig_object.get("/SubFilter")
        except Exception as exc:  # noqa: BLE001 - a broken signature dictionary or /Contents
            found.append(format_failure(f"signature {name!r} is unreadable: {_brief(exc)}"))
            continue
        if kind == "/DocTimeStamp":
            seen.add(name)
            continue  # document timestamps are not signatures by a person (and are allowed updates)
        if subfilter not in SUPPORTED_SUBFILTERS:
            found.append(format_failure(f"signature {name!r} has an unsupported type {subfilter}"))
            continue
        found.append(sig)
    return found, bool(found or seen)


def _with_file_revinfo(
    spec: SignatureValidationSpec, reader: PdfFileReader
) -> tuple[SignatureValidationSpec, list[str]]:
    """``spec`` knowing also the certificates, CRLs and OCSP responses in the file's Document Security Store.

    Each item is parsed on its own: a malformed one is left out (with a warning) instead of spoiling the rest.
    """
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return spec, []
    except Exception as exc:  # noqa: BLE001 - an unreadable DSS adds nothing; revocation may then be unknown
        return spec, [f"unreadable Document Security Store ignored: {_brief(exc)}"]
    extra = LocalKnowledge()
    skipped = 0
    for kind, refs in (("cert", dss.certs.values()), ("crl", dss.crls), ("ocsp", dss.ocsps)):
        for ref in refs:
            try:
                _load_dss_item(kind, ref, extra)
            except Exception:  # noqa: BLE001 - one malformed item
                skipped += 1
    warnings = [f"{skipped} unreadable item(s) in the Document Security Store ignored"] if skipped else []
    return _add_knowledge(spec, extra), warnings


def _load_dss_item(kind: str, ref: Any, into: LocalKnowledge) -> None:
    if kind == "cert":
        cert = x509.Certificate.load(ref.get_object().read_data(DecodePurpose.CERTIFICATE))
        cert.native  # noqa: B018 - force a full parse: malformed input fails here, not deep inside validation
        into.known_certs.append(cert)
    elif kind == "crl":
        item = crl.CertificateList.load(ref.get_object().read_data(DecodePurpose.CRL))
        item.native  # noqa: B018
        into.known_crls.append(CRLContainer(item))
    else:
        response = ocsp.OCSPResponse.load(ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE))
        response.native  # noqa: B018
        into.known_ocsps.extend(OCSPContainer.load_multi(response))


def _with_signature_revinfo(spec: SignatureValidationSpec, signer_info: cms.SignerInfo) -> SignatureValidationSpec:
    """``spec`` knowing also the CRLs and OCSP responses in the signature's revocation-info-archival attribute."""
    try:
        archive = find_unique_cms_attribute(signer_info["signed_attrs"], "adobe_revocation_info_archival")
    except NonexistentAttributeError:
        return spec
    extra = LocalKnowledge(
        known_crls=[CRLContainer(item) for item in archive["crl"] or ()],
        known_ocsps=[OCSPContainer(item) for item in archive["ocsp"] or ()],
    )
    return _add_knowledge(spec, extra)


def _add_knowledge(spec: SignatureValidationSpec, extra: LocalKnowledge) -> SignatureValidationSpec:
    known = spec.local_knowledge
    merged = dataclasses.replace(
        known,
        known_certs=[*known.known_certs, *extra.known_certs],
        known_crls=[*known.known_crls, *extra.known_crls],
        known_ocsps=[*known.known_ocsps, *extra.known_ocsps],
    )
    return dataclasses.replace(spec, local_knowledge=merged)


async def _validate_signature(
    sig: EmbeddedPdfSignature, spec: PdfSignatureValidationSpec, timing: ValidationTimingInfo, store: TrustStore
) -> tuple[SignatureResult, dict[str, Any]]:
    """One signature: AdES indication from pyHanko, then the PDF coverage and modification facts (and those facts)."""
    sig.compute_integrity_info(diff_policy=spec.diff_policy)
    integrity = sig.summarise_integrity_info()
    claimed = _claimed_signing_time(sig)
    # The PDF integrity facts stay out of pyHanko's status object: ades_basic_validation builds a plain CMS status
    # on success whatever ``status_cls`` says, so PdfSignatureStatus keywords would break it. They are applied below.
    status_kwargs = {"signer_reported_dt": claimed} if claimed is not None else {}
    signature_spec = _with_signature_revinfo(spec.signature_validation_spec, sig.signer_info)
    result = await validate_signed_data(
        sig.signed_data,
        signature_spec,
        timing=timing,
        raw_digest=sig.compute_digest(),
        extra_status_kwargs=status_kwargs,
        signer_cert=lambda: _signer_cert(sig),
        crl_issuers=store.crl_issuer_cache(signature_spec),
    )
    result = await with_document_timestamps(result, sig, spec, signature_spec, timing)
    if result.signing_time is None:
        result = dataclasses.replace(result, signing_time=claimed)
    return _apply_modification_analysis(result, integrity), integrity


def _signer_cert(sig: EmbeddedPdfSignature) -> x509.Certificate | None:
    try:
        return sig.signer_cert
    except Exception:  # noqa: BLE001 - no usable signer certificate: the result says so through its indication
        return None


def _claimed_signing_time(sig: EmbeddedPdfSignature) -> datetime | None:
    """The signer's own claim: the signingTime attribute, else the signature dictionary's ``/M`` (proves nothing)."""
    try:
        claimed = sig.self_reported_timestamp
    except Exception:  # noqa: BLE001 - an unparsable /M date is no reason to reject the signature
        return None
    if claimed is not None and claimed.tzinfo is None:
        claimed = claimed.replace(tzinfo=UTC)
    return claimed


def _apply_modification_analysis(result: SignatureResult, integrity: dict[str, Any]) -> SignatureResult:
    """``result`` with ``covers_whole_document`` / ``modified_after_signing`` from pyHanko's coverage and difference
    analysis."""
    coverage: SignatureCoverageLevel | None = integrity.get("coverage")
    diff = integrity.get("diff_result")
    if coverage is SignatureCoverageLevel.ENTIRE_FILE:
        return result
    if coverage is not SignatureCoverageLevel.ENTIRE_REVISION:
        # The byte range leaves part of the signed revision unsigned: what is outside it was never signed.
        reason = f"the signed byte range does not cover the signed revision ({_name(coverage)})"
        return _not_whole_document(result).with_warnings(reason)
    if isinstance(diff, SuspiciousModification) or diff is None:
        reason = _brief(diff) if diff is not None else "difference analysis unavailable"
        return _modified(result, f"{ModificationLevel.OTHER.name} ({reason})")
    level = diff.modification_level
    if level > ALLOWED_MODIFICATION:
        return _modified(result, level.name)
    if integrity.get("docmdp_ok") is False:
        return _modified(result, f"{level.name}, not allowed by the signer's DocMDP permission")
    return result


def _modified(result: SignatureResult, level: str) -> SignatureResult:
    changed = dataclasses.replace(_not_whole_document(result), modified_after_signing=True)
    return changed.with_warnings(f"document modified after signing: {level}")


def _not_whole_document(result: SignatureResult) -> SignatureResult:
    """The signature does not vouch for the document as shown: it fails format checking (as EU DSS reports PDF
    modification and coverage failures), whatever its cryptography and certificate said."""
    if result.indication is Indication.TOTAL_PASSED:
        return dataclasses.replace(
            result,
            covers_whole_document=False,
            indication=Indication.TOTAL_FAILED,
            sub_indication=SubIndication.FORMAT_FAILURE,
        )
    return dataclasses.replace(result, covers_whole_document=False)


def _name(value: Any) -> str:
    return getattr(value, "name", str(value))


def _brief(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short, readable line for a report's warnings."""
    return explain(exc, limit)
