"""CMS / CAdES detached and attached signatures over arbitrary files."""

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import cms, keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.sign.timestamps import DummyTimeStamper

from signing.cms import validate_cms
from signing.report import Format, Indication, Revocation, SubIndication, Verdict
from signing.trust import TrustSettings, TrustStore
from signing.verify import verify_document
from tests.reports import (
    EXPIRED,
    FORMAT_FAILURE,
    HASH_FAILURE,
    NO_CHAIN,
    NO_SIGNING_USAGE,
    REVOCATION_UNKNOWN,
    SIG_CRYPTO,
    WEAK_CRYPTO,
    only,
    outcome,
)

SCAN = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # any file: here a fake scanned image


def _asn1_cert(identity) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(identity.cert_der())


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore.load(
        TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=pki.crl_paths)
    )


async def sign(identity, data: bytes = SCAN, *, digest="sha256", detached=True, timestamper=None) -> bytes:
    signer = identity.pyhanko_signer()
    info = await signer.async_sign_general_data(
        data, digest, detached=detached, use_cades=True, timestamper=timestamper
    )
    return info.dump()


async def test_detached_signature_by_a_trusted_signer_is_valid(pki, store):
    report = await validate_cms(await sign(pki.good), store, content=SCAN, file="scan.png")
    sig = only(report)
    assert report.format is Format.CADES
    assert (report.verdict, sig.indication, sig.sub_indication) == (Verdict.VALID, Indication.TOTAL_PASSED, None)
    assert report.originals_check_required is False
    assert sig.revocation is Revocation.GOOD
    assert sig.signer.identifiers == {"tax_code": "0101234567", "citizen_id": "001099012345"}
    assert sig.signing_time is not None
    assert len(sig.chain) == 3


async def test_ecdsa_p256_signer_is_valid(pki, store):
    report = await validate_cms(await sign(pki.good_ec), store, content=SCAN)
    assert report.verdict is Verdict.VALID


async def test_attached_signature_carries_its_content(pki, store):
    report = await validate_cms(await sign(pki.good, detached=False), store)
    assert report.verdict is Verdict.VALID


async def test_detached_signature_over_a_changed_file_is_modified(pki, store):
    signature = await sign(pki.good)
    report = await validate_cms(signature, store, content=SCAN + b"x")
    assert outcome(report) == HASH_FAILURE


async def test_broken_signature_value_is_invalid(pki, store):
    info = cms.ContentInfo.load(await sign(pki.good))
    signer_info = info["content"]["signer_infos"][0]
    value = bytearray(signer_info["signature"].native)
    value[10] ^= 0xFF
    signer_info["signature"] = bytes(value)
    report = await validate_cms(info.dump(), store, content=SCAN)
    assert outcome(report) == SIG_CRYPTO


async def test_revoked_signer(pki, store):
    report = await validate_cms(await sign(pki.revoked), store, content=SCAN)
    sig = only(report)
    assert report.verdict is Verdict.REVOKED
    assert sig.sub_indication in {SubIndication.REVOKED_NO_POE, SubIndication.REVOKED}
    assert sig.revocation is Revocation.REVOKED


async def test_expired_signer(pki, store):
    report = await validate_cms(await sign(pki.expired), store, content=SCAN)
    assert outcome(report) == EXPIRED


async def test_foreign_root_is_untrusted(pki, store):
    report = await validate_cms(await sign(pki.foreign), store, content=SCAN)
    assert outcome(report) == NO_CHAIN


async def test_unknown_revocation_status_is_never_valid(pki):
    # Offline, no CRL configured: the status of the signer cannot be established (hard fail).
    bare = TrustStore.load(TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path]))
    report = await validate_cms(await sign(pki.good), bare, content=SCAN)
    assert outcome(report) == REVOCATION_UNKNOWN
    assert only(report).revocation is Revocation.UNKNOWN


async def test_ca_without_revocation_service_is_untrusted(pki, store):
    with_ca = store.extended(certs=[_asn1_cert(pki.ca_norev)])
    report = await validate_cms(await sign(pki.no_revinfo), with_ca, content=SCAN)
    assert report.verdict is Verdict.UNTRUSTED
    assert (only(report).indication, only(report).sub_indication) == (Indication.INDETERMINATE, SubIndication.TRY_LATER)


async def test_rsa_1024_signer_is_refused_by_the_national_minimum(pki, store):
    report = await validate_cms(await sign(pki.weak_rsa), store, content=SCAN)
    assert outcome(report) == WEAK_CRYPTO


async def test_small_ec_key_is_refused(pki, store):
    report = await validate_cms(await sign(pki.weak_ec), store, content=SCAN)
    sig = only(report)
    assert report.verdict is Verdict.INVALID
    assert sig.sub_indication is SubIndication.CRYPTO_CONSTRAINTS_FAILURE


async def test_sha1_digest_is_refused(pki, store):
    report = await validate_cms(await sign(pki.good, digest="sha1"), store, content=SCAN)
    assert outcome(report) == WEAK_CRYPTO


async def test_signer_without_signing_key_usage(pki, store):
    report = await validate_cms(await sign(pki.no_signing_usage), store, content=SCAN)
    assert outcome(report) == NO_SIGNING_USAGE


async def test_signature_timestamp_is_reported(pki, store):
    tsa_key = keys.PrivateKeyInfo.load(
        pki.tsa.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    stamper = DummyTimeStamper(tsa_cert=_asn1_cert(pki.tsa), tsa_key=tsa_key, certs_to_embed=[_asn1_cert(pki.ca)])
    report = await validate_cms(await sign(pki.good, timestamper=stamper), store, content=SCAN)
    sig = only(report)
    assert report.verdict is Verdict.VALID, report.to_json()
    assert sig.timestamp_time is not None
    assert abs(sig.timestamp_time - datetime.now(UTC)) < timedelta(minutes=5)


async def test_two_signers_on_one_file_are_both_reported(pki, store):
    first = cms.ContentInfo.load(await sign(pki.good))
    second = cms.ContentInfo.load(await sign(pki.revoked))
    merged = first["content"]
    merged["certificates"] = cms.CertificateSet(
        list(first["content"]["certificates"]) + list(second["content"]["certificates"])
    )
    merged["signer_infos"] = cms.SignerInfos(
        list(first["content"]["signer_infos"]) + list(second["content"]["signer_infos"])
    )
    report = await validate_cms(first.dump(), store, content=SCAN)
    # SignerInfos is a DER SET OF: its order on the wire is by encoding, not by signing order.
    assert sorted(s.verdict for s in report.signatures) == sorted([Verdict.VALID, Verdict.REVOKED])
    assert report.verdict is Verdict.REVOKED


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n", b"\x00" * 100],
)
async def test_garbage_signature_is_format_failure(store, garbage):
    report = await validate_cms(garbage, store, content=SCAN)
    assert outcome(report) == FORMAT_FAILURE


async def test_detached_signature_without_the_file(pki, store):
    report = await validate_cms(await sign(pki.good), store)
    assert only(report).sub_indication is SubIndication.FORMAT_FAILURE


async def test_mutated_signatures_never_pass_and_never_raise(pki, store):
    import random

    original = await sign(pki.good)
    rng = random.Random(20261123)
    for _ in range(60):
        mutated = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if bytes(mutated) == original:
            continue
        report = await verify_document(SCAN, store, filename="scan.png", detached_signature=bytes(mutated))
        if report.verdict is Verdict.VALID:
            # Only a change outside what is signed (say, in an extra copy of the CA certificate that path building
            # does not need) may leave the signature valid: the signer info itself must be untouched.
            mutated_info = cms.ContentInfo.load(bytes(mutated))["content"]["signer_infos"].dump()
            assert mutated_info == cms.ContentInfo.load(original)["content"]["signer_infos"].dump()


# --- CRL issuers remembered across documents --------------------------------------------------------------------------


def _fresh_store(pki) -> TrustStore:
    return TrustStore.load(
        TrustSettings(trust_anchors=[pki.root.cert_path], intermediates=[pki.ca.cert_path], crls=pki.crl_paths)
    )


async def test_crl_issuers_found_once_serve_the_next_document_with_the_same_certificates(pki):
    store = _fresh_store(pki)
    first = await validate_cms(await sign(pki.good), store, content=SCAN)
    assert len(store.crl_issuers._entries) == 1
    other = b"another scanned page"
    second = await validate_cms(await sign(pki.good, other), store, content=other)
    assert len(store.crl_issuers._entries) == 1  # the same certificates: the same entry, found again
    for report in (first, second):
        assert report.verdict is Verdict.VALID
        assert only(report).revocation is Revocation.GOOD
    assert only(first).chain == only(second).chain


async def test_remembered_crl_issuers_never_change_another_signers_verdict(pki):
    store = _fresh_store(pki)
    assert (await validate_cms(await sign(pki.good), store, content=SCAN)).verdict is Verdict.VALID
    revoked = await validate_cms(await sign(pki.revoked), store, content=SCAN)
    assert revoked.verdict is Verdict.REVOKED
    assert only(revoked).revocation is Revocation.REVOKED
    assert len(store.crl_issuers._entries) == 1  # other certificates, another key; a failure is not remembered


async def test_crl_issuers_are_shared_only_while_the_store_knows_all_revocation_data(pki):
    import dataclasses

    from pyhanko_certvalidator.revinfo.archival import CRLContainer

    store = _fresh_store(pki)
    assert store.crl_issuer_cache(store.spec) is store.crl_issuers
    # A document bringing CRLs of its own (a PDF's Document Security Store) could copy a signature value.
    knowledge = dataclasses.replace(
        store.spec.local_knowledge, known_crls=[*store.spec.local_knowledge.known_crls, CRLContainer(store.crls[0])]
    )
    assert store.crl_issuer_cache(dataclasses.replace(store.spec, local_knowledge=knowledge)) is None
    online = TrustStore(
        anchors=store.anchors, intermediates=store.intermediates, crls=store.crls, online_revocation=True
    )
    assert online.crl_issuer_cache(online.spec) is None


async def test_attached_signature_over_a_pdf_is_validated_as_cms(pki, store):
    """A ``.pdf.p7m``: the PDF it carries starts within its first bytes, but the file is a CMS signature."""
    pdf = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    signature = await sign(pki.good, pdf, detached=False)
    assert b"%PDF-" in signature[:1024]
    report = await verify_document(signature, store, filename="don.pdf.p7m")
    assert report.format is Format.CADES
    assert report.verdict is Verdict.VALID, report.to_json()
