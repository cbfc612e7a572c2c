"""Self-test of the throw-away test PKI (tests/pki.py) and its OCSP/CRL server."""

from __future__ import annotations

import base64
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError, RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

from tests.pki import (
    CITIZEN_ID,
    TAX_CODE,
    WEAK_EC_CURVE,
    Identity,
    PKIServer,
    TestPKI,
    ec_key,
    issue_cert,
    make_crl,
)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def _asn1(identity: Identity) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(identity.cert_der())


def _ocsp_request(identity: Identity, issuer: Identity, *, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(identity.cert, issuer.cert, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post_ocsp(server: PKIServer, request: bytes) -> ocsp.OCSPResponse:
    response = httpx.post(
        f"{server.base_url}/ocsp",
        content=request,
        headers={"Content-Type": "application/ocsp-request"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def _assert_signed_by_responder(answer: ocsp.OCSPResponse, pki: TestPKI) -> None:
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert [c.fingerprint(hashes.SHA256()) for c in answer.certificates] == [
        pki.ocsp_signer.cert.fingerprint(hashes.SHA256())
    ]
    public_key = pki.ocsp_signer.cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), answer.signature_hash_algorithm)
    assert abs(answer.produced_at_utc - datetime.now(UTC)) < timedelta(minutes=5)


# -- the certificates --------------------------------------------------------------------------------------------------


def test_chain_verifies(pki: TestPKI) -> None:
    for signer in (pki.good, pki.good_ec, pki.revoked, pki.expired, pki.weak_rsa, pki.weak_ec, pki.no_signing_usage):
        signer.cert.verify_directly_issued_by(pki.ca.cert)
        assert signer.chain == [pki.ca]
    pki.tsa.cert.verify_directly_issued_by(pki.ca.cert)
    pki.ocsp_signer.cert.verify_directly_issued_by(pki.ca.cert)
    pki.ca.cert.verify_directly_issued_by(pki.root.cert)
    pki.root.cert.verify_directly_issued_by(pki.root.cert)
    pki.ca_norev.cert.verify_directly_issued_by(pki.root.cert)
    pki.no_revinfo.cert.verify_directly_issued_by(pki.ca_norev.cert)
    pki.foreign.cert.verify_directly_issued_by(pki.foreign_root.cert)
    with pytest.raises(ValueError):
        pki.foreign.cert.verify_directly_issued_by(pki.ca.cert)
    assert pki.root.chain == pki.ca.chain == pki.foreign.chain == []
    assert pki.no_revinfo.chain == [pki.ca_norev]


def test_files_on_disk_match(pki: TestPKI) -> None:
    assert x509.load_pem_x509_certificate(pki.good.cert_path.read_bytes()) == pki.good.cert
    key = serialization.load_pem_private_key(pki.good.key_path.read_bytes(), password=None)
    assert key.public_key() == pki.good.cert.public_key()
    assert b"BEGIN PRIVATE KEY" in pki.good.key_path.read_bytes()  # unencrypted PKCS#8
    assert x509.load_pem_x509_crl(pki.crl_pem_path.read_bytes()) == pki.crl


def test_ca_extensions(pki: TestPKI) -> None:
    root_bc = pki.root.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert root_bc.critical and root_bc.value.ca
    root_ku = pki.root.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert root_ku.key_cert_sign and root_ku.crl_sign and not root_ku.digital_signature
    root_key = pki.root.cert.public_key()
    assert isinstance(root_key, rsa.RSAPublicKey) and root_key.key_size == 3072
    assert pki.ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_signer_extensions(pki: TestPKI) -> None:
    cert = pki.good.cert
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = pki.ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    dps = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [name.value for dp in dps for name in dp.full_name or []] == [pki.crl_url]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_location.value for a in aia] == [pki.ocsp_url]
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"

    no_ku = pki.no_signing_usage.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert no_ku.key_encipherment and not no_ku.digital_signature and not no_ku.content_commitment


def test_subject_carries_vietnamese_identifiers(pki: TestPKI) -> None:
    for signer in (pki.good, pki.good_ec, pki.revoked, pki.expired, pki.weak_rsa, pki.weak_ec, pki.no_revinfo):
        subject = signer.cert.subject
        assert subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == f"MST:{TAX_CODE}"
        assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == f"CCCD:{CITIZEN_ID}"
        assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"
        province = subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)[0]
        assert province.value == "Hà Nội"
        assert province._type.name == "UTF8String"
        assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Công ty TNHH Thử nghiệm"
    assert pki.good.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Nguyễn Văn A"
    assert pki.foreign.cert.subject == pki.good.cert.subject  # a look-alike from another hierarchy


def test_special_identities(pki: TestPKI) -> None:
    weak = pki.weak_rsa.cert.public_key()
    assert isinstance(weak, rsa.RSAPublicKey) and weak.key_size == 1024
    weak_ec = pki.weak_ec.cert.public_key()
    assert isinstance(weak_ec, ec.EllipticCurvePublicKey) and weak_ec.curve.name == WEAK_EC_CURVE.name
    assert WEAK_EC_CURVE.name in {"secp192r1", "secp224r1"}
    good_ec = pki.good_ec.cert.public_key()
    assert isinstance(good_ec, ec.EllipticCurvePublicKey) and good_ec.curve.name == "secp256r1"

    now = datetime.now(UTC)
    assert pki.expired.cert.not_valid_after_utc < now - timedelta(days=300)
    assert pki.good.cert.not_valid_before_utc < now < pki.good.cert.not_valid_after_utc

    tsa_eku = pki.tsa.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert tsa_eku.critical and list(tsa_eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    responder = pki.ocsp_signer.cert.extensions
    assert list(responder.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    responder.get_extension_for_class(x509.OCSPNoCheck)

    for cert in (pki.no_revinfo.cert, pki.ca_norev.cert):
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    with pytest.raises(x509.ExtensionNotFound):
        pki.no_revinfo.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_issue_cert_with_sha1(pki: TestPKI, tmp_path: Path) -> None:
    # cryptography's builders refuse SHA-1; issue_cert/make_crl re-sign by hand so legacy material can be tested.
    for issuer, key in ((pki.ca, None), (pki.ca, ec_key())):
        cert = issue_cert(issuer, "sha1", tmp_path, key=key, hash_alg=hashes.SHA1()).cert
        assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha1"
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA1
        ca_key = pki.ca.cert.public_key()
        assert isinstance(ca_key, rsa.RSAPublicKey)
        ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA1())
        assert (
            _asn1(pki.good)["tbs_certificate"]["subject"]
            == asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))["tbs_certificate"]["subject"]
        )
    ec_ca = issue_cert(pki.root, "ec_ca", tmp_path, key=ec_key(), ca=True)
    ec_signed = issue_cert(ec_ca, "sha1_ec", tmp_path, hash_alg=hashes.SHA1()).cert
    assert ec_signed.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA1
    ec_public = ec_ca.cert.public_key()
    assert isinstance(ec_public, ec.EllipticCurvePublicKey)
    ec_public.verify(ec_signed.signature, ec_signed.tbs_certificate_bytes, ec.ECDSA(hashes.SHA1()))

    crl = make_crl(pki.ca, [(pki.good.cert, datetime.now(UTC))], hash_alg=hashes.SHA1())
    assert crl.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA1
    assert crl.get_revoked_certificate_by_serial_number(pki.good.cert.serial_number) is not None


def test_pyhanko_signer(pki: TestPKI) -> None:
    signer = pki.good.pyhanko_signer()
    assert signer.signing_cert.dump() == pki.good.cert_der()
    assert [c.dump() for c in signer.cert_registry] == [pki.ca.cert_der()]


# -- the CRLs ----------------------------------------------------------------------------------------------------------


def test_crl_lists_revoked_and_is_signed_by_ca(pki: TestPKI) -> None:
    crl = pki.crl
    assert crl.is_signature_valid(pki.ca.cert.public_key())  # type: ignore[arg-type]
    assert crl.issuer == pki.ca.cert.subject
    entry = crl.get_revoked_certificate_by_serial_number(pki.revoked.cert.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == pki.revoked_at
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    assert len(crl) == 1
    assert crl.get_revoked_certificate_by_serial_number(pki.expired.cert.serial_number) is None
    now = datetime.now(UTC)
    assert crl.last_update_utc < now - timedelta(minutes=50)
    assert crl.next_update_utc is not None and crl.next_update_utc > now + timedelta(days=6)

    root_crl = pki.root_crl
    assert root_crl.is_signature_valid(pki.root.cert.public_key())  # type: ignore[arg-type]
    assert len(root_crl) == 0


def test_server_serves_crl_and_ca(pki: TestPKI, pki_server: PKIServer) -> None:
    with httpx.Client(timeout=TIMEOUT) as client:
        crl = client.get(f"{pki_server.base_url}/ca.crl")
        assert crl.content == pki.crl_path.read_bytes()
        assert client.get(f"{pki_server.base_url}/ca.crt").content == pki.ca.cert_der()
        assert client.get(f"{pki_server.base_url}/root.crl").content == pki.root_crl_path.read_bytes()
        assert client.get(f"{pki_server.base_url}/nothing").status_code == 404


# -- the OCSP responder ------------------------------------------------------------------------------------------------


def test_ocsp_good(pki: TestPKI, pki_server: PKIServer) -> None:
    before = pki_server.hits.get("/ocsp", 0)
    answer = _post_ocsp(pki_server, _ocsp_request(pki.good, pki.ca, nonce=b"0123456789abcdef"))
    _assert_signed_by_responder(answer, pki)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == pki.good.cert.serial_number
    assert (
        answer.responder_key_hash
        == pki.ocsp_signer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    now = datetime.now(UTC)
    assert now - timedelta(hours=2) < answer.this_update_utc < now - timedelta(minutes=50)
    assert answer.next_update_utc is not None and answer.next_update_utc > now + timedelta(hours=23)
    assert pki_server.hits["/ocsp"] == before + 1


def test_ocsp_revoked(pki: TestPKI, pki_server: PKIServer) -> None:
    answer = _post_ocsp(pki_server, _ocsp_request(pki.revoked, pki.ca))
    _assert_signed_by_responder(answer, pki)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_time_utc == pki.revoked_at
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    with pytest.raises(x509.ExtensionNotFound):  # no nonce asked, none given
        answer.extensions.get_extension_for_class(x509.OCSPNonce)


def test_ocsp_unknown_for_a_foreign_cert(pki: TestPKI, pki_server: PKIServer) -> None:
    answer = _post_ocsp(pki_server, _ocsp_request(pki.foreign, pki.foreign_root))
    _assert_signed_by_responder(answer, pki)
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert answer.serial_number == pki.foreign.cert.serial_number


def test_ocsp_get_form(pki: TestPKI, pki_server: PKIServer) -> None:
    encoded = urllib.parse.quote(base64.b64encode(_ocsp_request(pki.good, pki.ca)).decode(), safe="")
    response = httpx.get(f"{pki_server.base_url}/ocsp/{encoded}", timeout=TIMEOUT)
    answer = ocsp.load_der_ocsp_response(response.content)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_garbage_is_malformed(pki_server: PKIServer) -> None:
    answer = _post_ocsp(pki_server, b"\x30\x03\x02\x01\x01")
    assert answer.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# -- pyhanko-certvalidator ---------------------------------------------------------------------------------------------


def _local_context(pki: TestPKI, *, crls: list[bytes] | None = None) -> ValidationContext:
    return ValidationContext(
        trust_roots=[_asn1(pki.root)],
        other_certs=[_asn1(pki.ca), _asn1(pki.ca_norev)],
        crls=[p.read_bytes() for p in pki.crl_paths] if crls is None else crls,
        revocation_mode="require",
    )


async def test_certvalidator_accepts_good_with_local_crls(pki: TestPKI) -> None:
    for signer in (pki.good, pki.good_ec):
        path = await CertificateValidator(_asn1(signer), validation_context=_local_context(pki)).async_validate_usage(
            set()
        )
        assert path.pkix_len == 2  # the trust anchor is not counted
        assert path.leaf.dump() == signer.cert_der()


async def test_certvalidator_rejects_revoked(pki: TestPKI) -> None:
    validator = CertificateValidator(_asn1(pki.revoked), validation_context=_local_context(pki))
    with pytest.raises(RevokedError):
        await validator.async_validate_usage(set())


async def test_certvalidator_needs_the_root_crl_for_the_intermediate(pki: TestPKI) -> None:
    # "require" applies to the intermediate CA too: the ca's CRL alone is not enough.
    context = _local_context(pki, crls=[pki.crl_path.read_bytes()])
    with pytest.raises(InsufficientRevinfoError):
        await CertificateValidator(_asn1(pki.good), validation_context=context).async_validate_usage(set())


async def test_certvalidator_no_revinfo_is_insufficient(pki: TestPKI) -> None:
    validator = CertificateValidator(_asn1(pki.no_revinfo), validation_context=_local_context(pki))
    with pytest.raises(InsufficientRevinfoError):
        await validator.async_validate_usage(set())


async def test_certvalidator_fetches_from_the_server(pki: TestPKI, pki_server: PKIServer) -> None:
    before = dict(pki_server.hits)
    backend = AIOHttpFetcherBackend(per_request_timeout=10)
    try:

        def online() -> ValidationContext:
            return ValidationContext(
                trust_roots=[_asn1(pki.root)],
                other_certs=[_asn1(pki.ca)],
                allow_fetching=True,
                fetcher_backend=backend,
                revocation_mode="require",
            )

        await CertificateValidator(_asn1(pki.good), validation_context=online()).async_validate_usage(set())
        fetched = {path for path, count in pki_server.hits.items() if count > before.get(path, 0)}
        assert "/ocsp" in fetched or "/ca.crl" in fetched
        assert "/root.crl" in fetched  # the intermediate's status comes from the root's CRL

        with pytest.raises(RevokedError):
            await CertificateValidator(_asn1(pki.revoked), validation_context=online()).async_validate_usage(set())
    finally:
        await backend.close()
