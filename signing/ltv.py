"""Long-term validation: revocation data proves a certificate's status only while the certificate was valid.

CAs drop expired certificates from their CRLs (RFC 5280 §3.3), and OCSP responders may stop answering for them, so
"not listed" in a CRL issued after a certificate expired proves nothing about it. When a signature passes with a
certificate that has expired by the validation time (a timestamp proved that the signature existed earlier), this
module asks for revocation data about that certificate that was

* issued no earlier than the proven signing time (so it speaks of the certificate's status at that time), and
* issued no later than the certificate's expiry, unless the CRL declares that it keeps expired certificates
  (the ExpiredCertsOnCRL extension, RFC 5280 / X.509 §9.5.2.4, dated no later than the expiry), or the OCSP answer
  carries an archive cutoff (RFC 6960 §4.4.4) no later than the expiry.

Without such data the signature is ``INDETERMINATE``/``OUT_OF_BOUNDS_NO_POE`` (the verdict ``expired``), as ETSI
EN 319 102-1 past certificate validation concludes when no proof of existence covers the gap.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import datetime

from asn1crypto import core, x509
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from .identity import certificate_label
from .report import Indication, Revocation, SignatureResult, SubIndication

__all__ = ["FROM_RESULT", "require_revocation_within_validity"]

#: id-ce-expiredCertsOnCRL
EXPIRED_CERTS_ON_CRL = "2.5.29.60"
#: id-pkix-ocsp-archive-cutoff
OCSP_ARCHIVE_CUTOFF = "1.3.6.1.5.5.7.48.1.6"


#: ``proven`` not given: the result's own timestamp time.
FROM_RESULT = object()


def require_revocation_within_validity(
    result: SignatureResult,
    path: ValidationPath | None,
    *,
    validation_time: datetime,
    crls: Iterable[CRLContainer],
    ocsps: Iterable[OCSPContainer],
    proven: datetime | object | None = FROM_RESULT,
) -> SignatureResult:
    """``result`` downgraded to ``OUT_OF_BOUNDS_NO_POE`` when a certificate of ``path`` expired before
    ``validation_time`` and no revocation data issued while it was valid (and after ``proven``, by default the
    result's timestamp time) is known for it. ``path`` is the signer's, or the signature timestamp's (``proven``
    then ``None``: its data need only be issued while the certificate was valid)."""
    if result.indication is not Indication.TOTAL_PASSED or path is None:
        return result
    if not isinstance(proven, datetime):
        proven = result.timestamp_time if proven is FROM_RESULT else None
    crl_list, ocsp_list = list(crls), list(ocsps)
    for cert in path.iter_certs(include_root=False):
        not_after: datetime = cert["tbs_certificate"]["validity"]["not_after"].native
        if not_after >= validation_time:
            continue
        if _covered_by_crl(cert, not_after, proven, crl_list) or _covered_by_ocsp(cert, not_after, proven, ocsp_list):
            continue
        reason = (
            f"the certificate {certificate_label(cert)!r} expired on {not_after:%Y-%m-%d} and no revocation data "
            "issued while it was valid shows its status at the proven signing time"
        )
        return dataclasses.replace(
            result,
            indication=Indication.INDETERMINATE,
            sub_indication=SubIndication.OUT_OF_BOUNDS_NO_POE,
            revocation=Revocation.UNKNOWN,
        ).with_warnings(reason)
    return result


def _in_window(issued: datetime | None, proven: datetime | None, not_after: datetime) -> bool:
    return issued is not None and issued <= not_after and (proven is None or issued >= proven)


def _covered_by_crl(
    cert: x509.Certificate, not_after: datetime, proven: datetime | None, crls: list[CRLContainer]
) -> bool:
    issuer = cert.issuer
    for container in crls:
        tbs = container.crl_data["tbs_cert_list"]
        if tbs["issuer"] != issuer:
            continue
        issued: datetime = tbs["this_update"].native
        keeps_expired = _expired_certs_on_crl(tbs)
        if keeps_expired is not None and keeps_expired <= not_after and (proven is None or issued >= proven):
            return True
        if _in_window(issued, proven, not_after):
            return True
    return False


def _expired_certs_on_crl(tbs: core.Sequence) -> datetime | None:
    """The date of the CRL's ExpiredCertsOnCRL extension: certificates expired since then are still listed."""
    for extension in tbs["crl_extensions"] or ():
        if extension["extn_id"].dotted == EXPIRED_CERTS_ON_CRL:
            try:
                value = core.GeneralizedTime.load(bytes(extension["extn_value"].contents)).native
            except (ValueError, TypeError):
                return None
            return value if isinstance(value, datetime) else None
    return None


def _covered_by_ocsp(
    cert: x509.Certificate, not_after: datetime, proven: datetime | None, ocsps: list[OCSPContainer]
) -> bool:
    serial = cert.serial_number
    for container in ocsps:
        try:
            single = container.extract_single_response()
            basic = container.extract_basic_ocsp_response()
        except (ValueError, KeyError, TypeError):
            continue
        if single is None or basic is None or not _same_certificate(single["cert_id"], cert, serial):
            continue
        if single["cert_status"].name != "good":
            continue
        issued: datetime = single["this_update"].native
        cutoff = _archive_cutoff(basic)
        if cutoff is not None and cutoff <= not_after and (proven is None or issued >= proven):
            return True
        if _in_window(issued, proven, not_after):
            return True
    return False


def _same_certificate(cert_id: core.Sequence, cert: x509.Certificate, serial: int) -> bool:
    """Whether an OCSP CertID names ``cert``: its serial number and its issuer's name hash."""
    if cert_id["serial_number"].native != serial:
        return False
    algorithm = cert_id["hash_algorithm"]["algorithm"].native
    try:
        digest = hashlib.new(algorithm, cert.issuer.dump()).digest()
    except (ValueError, TypeError):
        return False
    return bool(digest == cert_id["issuer_name_hash"].native)


def _archive_cutoff(basic: core.Sequence) -> datetime | None:
    for extension in basic["tbs_response_data"]["response_extensions"] or ():
        if extension["extn_id"].dotted == OCSP_ARCHIVE_CUTOFF:
            value = extension["extn_value"].native
            return value if isinstance(value, datetime) else None
    return None
