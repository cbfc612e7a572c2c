"""Long-term validation: a PAdES-LTA file whose signer's certificate has expired, and which revocation data counts.

A hierarchy of its own, dated in the past: a root and an issuing CA valid for years, a signer whose certificate ran
from 1100 to 400 days ago, and a time-stamping unit valid throughout. The signature carries a signature timestamp
from 800 days ago (inside the signer's validity), revocation data in the Document Security Store and a document
timestamp of today: the shape of a PAdES-LTA file.

Then files renewed in time (:func:`renewed_file`): the signature timestamp's unit has expired or been revoked too,
and document timestamps added while the certificates they vouch for were valid, with the revocation data gathered
then (OCSP answers for the end entities, the root's CRL for the issuing CA), carry the proof of existence to a
document timestamp that validates today. Each such case is compared with pyHanko's own ``ades_lta_validation``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import keys
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.ades.report import AdESPassed, AdESStatus
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore

from signing.pdf import validate_pdf
from signing.report import Indication, Revocation, SubIndication, Verdict
from signing.trust import TrustStore
from tests.pki import Identity, issue_cert, make_crl
from tests.reports import EXPIRED, only, outcome
from tests.signing_pdf_support import make_document

NOW = datetime.now(UTC)
SIGNED_AT = NOW - timedelta(days=800)
EXPIRED_AT = NOW - timedelta(days=400)


class Old:
    def __init__(self, directory) -> None:
        days = timedelta(days=1)
        self.root = issue_cert(
            None, "old_root", directory, subject_cn="Old Root", ca=True, not_before=NOW - 3650 * days
        )
        self.ca = issue_cert(
            self.root, "old_ca", directory, subject_cn="Old CA", ca=True, path_length=0, not_before=NOW - 2000 * days
        )
        self.signer = issue_cert(
            self.ca,
            "old_signer",
            directory,
            subject_cn="Ngô Thị Hết Hạn",
            not_before=NOW - 1100 * days,
            not_after=EXPIRED_AT,
        )
        self.tsa = issue_cert(
            self.ca,
            "old_tsa",
            directory,
            subject_cn="Old TSA",
            ekus=[ExtendedKeyUsageOID.TIME_STAMPING],
            ekus_critical=True,
            not_before=NOW - 1500 * days,
        )

    def timestamper(self, at: datetime) -> DummyTimeStamper:
        key = self.tsa.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return DummyTimeStamper(
            tsa_cert=self.tsa.asn1_cert(),
            tsa_key=keys.PrivateKeyInfo.load(key),
            certs_to_embed=[self.ca.asn1_cert()],
            fixed_dt=at,
        )


def _asn1(crl: x509.CertificateRevocationList) -> asn1_crl.CertificateList:
    return asn1_crl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))


def _crl_keeping_expired(issuer: Identity, since: datetime) -> x509.CertificateRevocationList:
    """A CRL issued today declaring (ExpiredCertsOnCRL) that it lists certificates expired since ``since``."""
    signing_key: object = issuer.key
    der_time = b"\x18\x0f" + since.strftime("%Y%m%d%H%M%SZ").encode()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(NOW - timedelta(hours=1))
        .next_update(NOW + timedelta(days=7))
        .add_extension(x509.CRLNumber(7), critical=False)
        .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.60"), der_time), critical=False)
    )
    return builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def old(tmp_path_factory) -> Old:
    return Old(tmp_path_factory.mktemp("old-pki"))


def lta_file(old: Old, crls: list[x509.CertificateRevocationList]) -> bytes:
    async def build() -> bytes:
        signed = await signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name="Sig1"),
            signer=old.signer.pyhanko_signer(),
            timestamper=old.timestamper(SIGNED_AT),
        ).async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_document()), strict=False))
        data = signed.getvalue()
        out = BytesIO(data)
        DocumentSecurityStore.add_dss(
            out, b"", certs=[old.ca.asn1_cert()], crls=[_asn1(c) for c in crls], force_write=True, strict=False
        )
        stamped = await signers.PdfTimeStamper(old.timestamper(NOW)).async_timestamp_pdf(
            IncrementalPdfFileWriter(BytesIO(out.getvalue()), strict=False), "sha256"
        )
        return stamped.getvalue()

    return asyncio.run(build())


def store(old: Old) -> TrustStore:
    return TrustStore(anchors=[old.root.asn1_cert()], intermediates=[old.ca.asn1_cert()])


def test_revocation_data_issued_after_expiry_proves_nothing(old):
    data = lta_file(old, [make_crl(old.ca, []), make_crl(old.root, [])])  # both issued today, after the expiry
    report = asyncio.run(validate_pdf(data, store(old)))
    sig = only(report)
    assert outcome(report) == EXPIRED, report.to_json()
    assert sig.timestamp_time is not None and sig.timestamp_time < EXPIRED_AT
    assert sig.revocation is Revocation.UNKNOWN
    assert any("no revocation data issued while it was valid" in warning for warning in sig.warnings)


def test_a_crl_that_keeps_expired_certificates_counts(old):
    data = lta_file(old, [_crl_keeping_expired(old.ca, SIGNED_AT - timedelta(days=400)), make_crl(old.root, [])])
    report = asyncio.run(validate_pdf(data, store(old)))
    assert report.verdict is Verdict.VALID, report.to_json()


def test_a_crl_keeping_expired_certificates_only_since_after_the_expiry_does_not(old):
    data = lta_file(old, [_crl_keeping_expired(old.ca, EXPIRED_AT + timedelta(days=30)), make_crl(old.root, [])])
    report = asyncio.run(validate_pdf(data, store(old)))
    sig = only(report)
    assert (sig.indication, sig.sub_indication) == (Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)


def _stale_crl(issuer: Identity, issued: datetime, revoked: list | None = None) -> x509.CertificateRevocationList:
    """A CRL issued at ``issued`` whose next update was a week later: stale today."""
    return make_crl(issuer, revoked or [], this_update=issued, next_update=issued + timedelta(days=7))


def _with_tsa(old: Old, directory: Path, issuer: Identity, not_after: datetime | None = None) -> Old:
    """``old`` with another time-stamping unit, issued by ``issuer``."""
    other = Old.__new__(Old)
    other.__dict__.update(old.__dict__)
    other.tsa = issue_cert(
        issuer,
        "other_tsa",
        directory,
        subject_cn="Other TSA",
        ekus=[ExtendedKeyUsageOID.TIME_STAMPING],
        ekus_critical=True,
        not_before=NOW - timedelta(days=1500),
        not_after=not_after,
    )
    return other


@pytest.fixture(scope="module")
def rooted(old, tmp_path_factory) -> Old:
    """The time-stamping unit certified by the root, whose CRL is fresh today: its timestamps validate today."""
    return _with_tsa(old, tmp_path_factory.mktemp("rooted-tsa"), old.root)


@pytest.fixture(scope="module")
def unexpired(rooted, tmp_path_factory) -> Old:
    """``rooted`` with a signer whose certificate is still valid today."""
    other = Old.__new__(Old)
    other.__dict__.update(rooted.__dict__)
    other.signer = issue_cert(
        rooted.ca,
        "live_signer",
        tmp_path_factory.mktemp("live-signer"),
        subject_cn="Ngô Thị Còn Hạn",
        not_before=NOW - timedelta(days=1100),
        not_after=NOW + timedelta(days=100),
    )
    return other


@pytest.mark.parametrize("holder", ["rooted", "unexpired"])
def test_a_crl_issued_after_the_timestamp_and_before_expiry_counts_though_stale_today(holder, request):
    # Evidence of the status at the proof of existence: issued after the timestamp, while the certificate was valid.
    pki: Old = request.getfixturevalue(holder)
    data = lta_file(pki, [_stale_crl(pki.ca, SIGNED_AT + timedelta(days=100)), make_crl(pki.root, [])])
    report = asyncio.run(validate_pdf(data, store(pki)))
    sig = only(report)
    assert report.verdict is Verdict.VALID, report.to_json()
    assert sig.timestamp_time is not None and abs(sig.timestamp_time - SIGNED_AT) < timedelta(minutes=5)
    assert sig.revocation is Revocation.GOOD
    if holder == "unexpired":  # stale today for a certificate still valid: established as of the timestamp
        assert any("as of the signature timestamp" in warning for warning in sig.warnings), sig.warnings


def test_the_timestamp_must_itself_validate_today(old):
    # The same CRL, but the time-stamping unit's own revocation data is stale too: the timestamp proves nothing today.
    data = lta_file(old, [_stale_crl(old.ca, SIGNED_AT + timedelta(days=100)), make_crl(old.root, [])])
    report = asyncio.run(validate_pdf(data, store(old)))
    assert report.verdict is Verdict.UNTRUSTED, report.to_json()


@pytest.mark.parametrize("holder", ["rooted", "unexpired"])
def test_a_stale_crl_issued_before_the_timestamp_does_not_count(holder, request):
    # Issued before the signature existed: a revocation between its issue and the signature would not show.
    pki: Old = request.getfixturevalue(holder)
    data = lta_file(pki, [_stale_crl(pki.ca, SIGNED_AT - timedelta(days=3)), make_crl(pki.root, [])])
    report = asyncio.run(validate_pdf(data, store(pki)))
    assert report.verdict is not Verdict.VALID, report.to_json()


def test_a_stale_crl_listing_the_signer_as_revoked_before_the_timestamp_revokes(unexpired):
    revoked = [(unexpired.signer.cert, SIGNED_AT - timedelta(days=10))]
    crls = [_stale_crl(unexpired.ca, SIGNED_AT + timedelta(days=100), revoked), make_crl(unexpired.root, [])]
    report = asyncio.run(validate_pdf(lta_file(unexpired, crls), store(unexpired)))
    assert report.verdict is Verdict.REVOKED, report.to_json()


def test_a_time_stamping_unit_expired_without_a_later_proof_of_existence_is_expired(old, tmp_path):
    # The signature timestamp's own chain follows the same rule: its unit's certificate expired 350 days before the
    # document timestamp, which therefore proves nothing about the signature timestamp.
    short_lived = _with_tsa(old, tmp_path, old.ca, not_after=SIGNED_AT + timedelta(days=50))
    data = lta_file(short_lived, [_stale_crl(old.ca, SIGNED_AT + timedelta(days=20)), make_crl(old.root, [])])
    report = asyncio.run(validate_pdf(data, store(old)))
    assert outcome(report) == EXPIRED, report.to_json()


def test_no_timestamp_verifiable_today_means_no_proof_of_existence_as_pyhanko_finds(rooted):
    # The shape of pyHanko's own PAdES-LTA test files (pades-lta-dss-indirect-arrs-test*.pdf) years later: the root's
    # CRL, which covers both the issuing CA and the time-stamping unit, was issued before the signature timestamp and
    # is stale today; the issuing CA's CRL was issued at the timestamp. No timestamp can be validated today, so
    # nothing proves the signature (or the DSS content) existed back then: not valid. pyHanko's ETSI long-term
    # validation does not pass it either.
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.ades.report import AdESStatus
    from pyhanko.sign.validation import ades
    from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec

    crls = [
        _stale_crl(rooted.ca, SIGNED_AT + timedelta(minutes=1)),
        _stale_crl(rooted.root, SIGNED_AT - timedelta(days=50)),
    ]
    data = lta_file(rooted, crls)
    report = asyncio.run(validate_pdf(data, store(rooted)))
    assert report.verdict is Verdict.UNTRUSTED, report.to_json()
    assert only(report).sub_indication is SubIndication.TRY_LATER
    reader = PdfFileReader(BytesIO(data), strict=False)
    spec = PdfSignatureValidationSpec(store(rooted).spec)  # the file's DSS is read by pyHanko itself
    theirs = asyncio.run(ades.ades_lta_validation(reader.embedded_regular_signatures[0], spec))
    assert theirs.ades_subindic.status is not AdESStatus.PASSED, theirs.ades_subindic


# --- Proofs of existence through document timestamps (PAdES-LTA) ---------------------------------------------------

DAY = timedelta(days=1)
#: When the first time-stamping unit's certificate expires: 50 days after the signature timestamp.
FIRST_TSU_EXPIRES = SIGNED_AT + 50 * DAY


@dataclass(frozen=True)
class Renewal:
    """One incremental update: revocation data added to the Document Security Store, then (unless ``by`` is
    ``None``) a document timestamp by ``by``'s unit at ``at``."""

    crls: list[x509.CertificateRevocationList]
    ocsps: list[bytes]
    by: Old | None
    at: datetime


def renewed_file(signing: Old, renewals: list[Renewal]) -> bytes:
    """A signature by ``signing`` (signature timestamp at ``SIGNED_AT`` by its unit), then ``renewals``."""

    async def build() -> bytes:
        signed = await signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name="Sig1"),
            signer=signing.signer.pyhanko_signer(),
            timestamper=signing.timestamper(SIGNED_AT),
        ).async_sign_pdf(IncrementalPdfFileWriter(BytesIO(make_document()), strict=False))
        data = signed.getvalue()
        for step in renewals:
            out = BytesIO(data)
            DocumentSecurityStore.add_dss(
                out,
                None,
                certs=[signing.ca.asn1_cert(), signing.root.asn1_cert(), signing.tsa.asn1_cert()],
                crls=[_asn1(c) for c in step.crls],
                ocsps=[asn1_ocsp.OCSPResponse.load(o) for o in step.ocsps],
                force_write=True,
                strict=False,
            )
            data = out.getvalue()
            if step.by is not None:
                stamped = await signers.PdfTimeStamper(step.by.timestamper(step.at)).async_timestamp_pdf(
                    IncrementalPdfFileWriter(BytesIO(data), strict=False), "sha256"
                )
                data = stamped.getvalue()
        return data

    return asyncio.run(build())


@pytest.fixture(scope="module")
def responder(old, tmp_path_factory) -> Identity:
    """The issuing CA's delegated OCSP responder (id-pkix-ocsp-nocheck)."""
    return issue_cert(
        old.ca,
        "old_ocsp",
        tmp_path_factory.mktemp("old-ocsp"),
        subject_cn="Old OCSP Responder",
        key_usage={"digital_signature"},
        ekus=[ExtendedKeyUsageOID.OCSP_SIGNING],
        ocsp_nocheck=True,
        not_before=NOW - 1500 * DAY,
    )


def _ocsp_good(responder: Identity, issuer: Identity, cert: Identity, at: datetime) -> bytes:
    """A "good" answer about ``cert`` produced at ``at`` and fresh for a week after it."""
    return _ocsp(responder, issuer, cert, at)


def _ocsp(
    responder: Identity, issuer: Identity, cert: Identity, at: datetime, revoked_at: datetime | None = None
) -> bytes:
    """An answer about ``cert`` produced at ``at`` and fresh for a week after it: "good", or "revoked" since
    ``revoked_at``."""
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=cert.cert,
            issuer=issuer.cert,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD if revoked_at is None else ocsp.OCSPCertStatus.REVOKED,
            this_update=at,
            next_update=at + 7 * DAY,
            revocation_time=revoked_at,
            revocation_reason=None if revoked_at is None else x509.ReasonFlags.key_compromise,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder.cert)
        .certificates([responder.cert])
    )
    signing_key: Any = responder.key
    return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


#: Certificates answered for by the issuing CA's OCSP responder declare it (never contacted: the store is offline).
OCSP_URL = "http://ocsp.old-ca.invalid/"


def _tsu(issuer: Identity, directory: Path, name: str, not_after: datetime) -> Identity:
    return issue_cert(
        issuer,
        name,
        directory,
        subject_cn=name.replace("_", " ").title(),
        ekus=[ExtendedKeyUsageOID.TIME_STAMPING],
        ekus_critical=True,
        not_before=NOW - 1500 * DAY,
        not_after=not_after,
        ocsp_url=OCSP_URL,
    )


@pytest.fixture(scope="module")
def short_lived(old, tmp_path_factory) -> Old:
    """A signer whose certificate expired 400 days ago, and a time-stamping unit whose certificate expired 50 days
    after the signature timestamp; the issuing CA's OCSP responder answers for both."""
    directory = tmp_path_factory.mktemp("short-lived")
    other = Old.__new__(Old)
    other.__dict__.update(old.__dict__)
    other.signer = issue_cert(
        old.ca,
        "archived_signer",
        directory,
        subject_cn="Ngô Thị Lưu Trữ",
        not_before=NOW - 1100 * DAY,
        not_after=EXPIRED_AT,
        ocsp_url=OCSP_URL,
    )
    other.tsa = _tsu(old.ca, directory, "short_tsu", FIRST_TSU_EXPIRES)
    return other


@pytest.fixture(scope="module")
def renewing(old, tmp_path_factory) -> Old:
    """A second time-stamping unit, under the issuing CA, whose certificate expired 200 days after the signature."""
    other = Old.__new__(Old)
    other.__dict__.update(old.__dict__)
    other.tsa = _tsu(old.ca, tmp_path_factory.mktemp("renewing"), "renewing_tsu", SIGNED_AT + 200 * DAY)
    return other


def _statuses(responder: Identity, pki: Old, at: datetime, *holders: Old) -> Renewal:
    """The revocation data an archiving service gathers at ``at``: OCSP answers for the signer and the units of
    ``holders``, the root's CRL for the issuing CA."""
    answers = [_ocsp_good(responder, pki.ca, who, at) for who in (pki.signer, *(h.tsa for h in holders))]
    return Renewal([_stale_crl(pki.root, at)], answers, None, at)


def _pyhanko_lta(data: bytes, trust: TrustStore):
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import ades
    from pyhanko.sign.validation.policy_decl import PdfSignatureValidationSpec

    reader = PdfFileReader(BytesIO(data), strict=False)
    spec = PdfSignatureValidationSpec(trust.spec)  # the file's DSS is read by pyHanko itself
    return asyncio.run(ades.ades_lta_validation(reader.embedded_regular_signatures[0], spec))


def _both(data: bytes, pki: Old):
    """The project's report and pyHanko's own PAdES-LTA verdict on the same file."""
    return asyncio.run(validate_pdf(data, store(pki))), _pyhanko_lta(data, store(pki)).ades_subindic


def _today(pki: Old) -> Renewal:
    """What keeps the last document timestamp verifiable today: the root's current CRL."""
    return Renewal([make_crl(pki.root, [])], [], None, NOW)


def test_a_document_timestamp_before_the_first_unit_expired_keeps_the_signature_valid(short_lived, rooted, responder):
    # Signer and first unit both expired long ago: the signature timestamp no longer validates today. The document
    # timestamp, added two days after signing with the revocation data gathered the day before, proves that the
    # signature and that data existed then; its own unit's chain validates today.
    gathered = _statuses(responder, short_lived, SIGNED_AT + DAY, short_lived)
    data = renewed_file(
        short_lived, [dataclasses.replace(gathered, by=rooted, at=SIGNED_AT + 2 * DAY), _today(short_lived)]
    )
    report, theirs = _both(data, short_lived)
    sig = only(report)
    assert report.verdict is Verdict.VALID, report.to_json()
    assert sig.timestamp_time is not None and abs(sig.timestamp_time - (SIGNED_AT + 2 * DAY)) < timedelta(minutes=5)
    assert any("through the document timestamps" in warning for warning in sig.warnings), sig.warnings
    assert theirs is AdESPassed.OK


def test_a_document_timestamp_before_the_first_unit_was_revoked_keeps_the_signature_valid(
    short_lived, rooted, responder, tmp_path
):
    # The first unit's certificate is still in its validity period but was revoked 100 days after signing (today's
    # answer says so): its signature timestamp proves nothing today. The document timestamp added before that
    # revocation, with the data gathered then, still proves the signature existed while everything was in order.
    revoked_unit = Old.__new__(Old)
    revoked_unit.__dict__.update(short_lived.__dict__)
    revoked_unit.tsa = _tsu(short_lived.ca, tmp_path, "revoked_tsu", NOW + 300 * DAY)
    gathered = _statuses(responder, revoked_unit, SIGNED_AT + DAY, revoked_unit)
    revocation = _ocsp(responder, revoked_unit.ca, revoked_unit.tsa, NOW - DAY, revoked_at=SIGNED_AT + 100 * DAY)
    renewals = [
        dataclasses.replace(gathered, by=rooted, at=SIGNED_AT + 2 * DAY),
        Renewal([make_crl(revoked_unit.root, [])], [revocation], None, NOW),
    ]
    report, theirs = _both(renewed_file(revoked_unit, renewals), revoked_unit)
    assert report.verdict is Verdict.VALID, report.to_json()
    assert any("through the document timestamps" in warning for warning in only(report).warnings)
    assert theirs is AdESPassed.OK


def test_a_chain_of_document_timestamps_renews_the_proof(short_lived, renewing, rooted, responder):
    # The first document timestamp's unit expired too (200 days after signing); a second one, added at day 150 with
    # that unit's revocation data, proves the first existed while its unit was valid.
    first = dataclasses.replace(_statuses(responder, short_lived, SIGNED_AT + DAY, short_lived), by=renewing)
    second = dataclasses.replace(_statuses(responder, renewing, SIGNED_AT + 149 * DAY, renewing), by=rooted)
    renewals = [
        dataclasses.replace(first, at=SIGNED_AT + 2 * DAY),
        dataclasses.replace(second, at=SIGNED_AT + 150 * DAY),
        _today(short_lived),
    ]
    report, theirs = _both(renewed_file(short_lived, renewals), short_lived)
    assert report.verdict is Verdict.VALID, report.to_json()
    assert theirs is AdESPassed.OK


def test_a_document_timestamp_after_the_first_unit_expired_proves_nothing(short_lived, rooted, responder, caplog):
    # Added 60 days after signing: the first unit had expired, and the revocation data gathered back then no longer
    # speaks of that time. Nothing proves the signature existed while its certificates could be checked.
    gathered = _statuses(responder, short_lived, SIGNED_AT + DAY, short_lived)
    late = dataclasses.replace(gathered, by=rooted, at=FIRST_TSU_EXPIRES + 10 * DAY)
    caplog.set_level(logging.WARNING)
    report, theirs = _both(renewed_file(short_lived, [late, _today(short_lived)]), short_lived)
    assert outcome(report) == EXPIRED, report.to_json()
    assert theirs.status is not AdESStatus.PASSED, theirs
    assert "Traceback" not in caplog.text  # the verdict is in the report, not in pyHanko's log


def test_revocation_data_issued_after_the_expiry_does_not_complete_the_proof(short_lived, rooted, responder):
    # The first document timestamp proves the signature existed two days after signing, but the only answer about
    # the signer came ten days after its certificate expired (kept by a second document timestamp): a responder (or
    # a CRL) may no longer know about an expired certificate, so "good" then proves nothing. pyHanko's ETSI
    # long-term validation does not pass it either.
    first = Renewal(
        [_stale_crl(short_lived.root, SIGNED_AT + DAY)],
        [_ocsp_good(responder, short_lived.ca, short_lived.tsa, SIGNED_AT + DAY)],
        rooted,
        SIGNED_AT + 2 * DAY,
    )
    after_expiry = EXPIRED_AT + 10 * DAY
    second = Renewal(
        [_stale_crl(short_lived.root, after_expiry)],
        [_ocsp_good(responder, short_lived.ca, short_lived.signer, after_expiry)],
        rooted,
        after_expiry + DAY,
    )
    report, theirs = _both(renewed_file(short_lived, [first, second, _today(short_lived)]), short_lived)
    assert outcome(report) == EXPIRED, report.to_json()
    assert theirs.status is not AdESStatus.PASSED, theirs
