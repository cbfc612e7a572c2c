"""A throw-away test PKI for the digital-signature verification tests.

Everything here is generated with the ``cryptography`` library at test-session start:

* ``root``: self-signed root CA (RSA 3072) that the tests trust;
* ``ca``: issuing CA (RSA 2048) signed by ``root``; it issues the signers, a TSA unit and a delegated OCSP responder,
  and publishes a CRL (``crl_path``) listing ``revoked``;
* ``ca_norev``: a second issuing CA signed by ``root`` that publishes no CRL and no OCSP service at all;
* ``foreign_root`` / ``foreign``: an unrelated hierarchy that must never be trusted.

The root also publishes a (empty) CRL, ``root_crl_path``, so that the status of the intermediate CAs can be
established when a validation policy requires revocation information for every certificate below the anchor.

:class:`PKIServer` serves the CRLs, the CA certificate and an RFC 6960 OCSP responder on 127.0.0.1 so that online
revocation checking can be exercised without leaving the machine.

End-entity subjects mimic real Vietnamese CA certificates: ``C=VN, ST=Hà Nội, O=Công ty TNHH Thử nghiệm, CN=<name>,
UID=MST:0101234567, serialNumber=CCCD:001099012345``.

``weak_ec`` uses NIST P-192 (SECP192R1) when the installed OpenSSL can generate such keys, else P-224 (SECP224R1);
:data:`WEAK_EC_CURVE` tells which one was used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from pyhanko.sign.signers import SimpleSigner

__all__ = [
    "CITIZEN_ID",
    "DEFAULT_CA_KEY_USAGE",
    "DEFAULT_SIGNER_KEY_USAGE",
    "TAX_CODE",
    "WEAK_EC_CURVE",
    "Identity",
    "PKIServer",
    "TestPKI",
    "build_pki",
    "ca_subject",
    "ec_key",
    "issue_cert",
    "iter_identities",
    "make_crl",
    "rsa_key",
    "signer_subject",
]

#: Identifier values carried by every end-entity signer (tax code in UID, citizen ID in serialNumber).
TAX_CODE = "0101234567"
CITIZEN_ID = "001099012345"

#: keyUsage bits (names of :class:`cryptography.x509.KeyUsage` arguments) used when ``key_usage`` is not given.
DEFAULT_SIGNER_KEY_USAGE = frozenset({"digital_signature", "content_commitment"})  # content_commitment = nonRepudiation
DEFAULT_CA_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})

_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)

_ORGANIZATION = "Công ty TNHH Thử nghiệm"
_PROVINCE = "Hà Nội"


def _pick_weak_curve() -> ec.EllipticCurve:
    """P-192 if this OpenSSL build can generate (and sign with) it, else P-224."""
    try:
        key = ec.generate_private_key(ec.SECP192R1())
        key.sign(b"probe", ec.ECDSA(hashes.SHA256()))
    except Exception:  # UnsupportedAlgorithm or an OpenSSL error, depending on the build
        return ec.SECP224R1()
    return ec.SECP192R1()


#: The curve of ``TestPKI.weak_ec``: SECP192R1 when supported (it is with the pinned cryptography/OpenSSL).
WEAK_EC_CURVE: ec.EllipticCurve = _pick_weak_curve()


def _now() -> datetime:
    # Certificates carry whole seconds; dropping microseconds keeps comparisons in tests exact.
    return datetime.now(UTC).replace(microsecond=0)


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def signer_subject(common_name: str = "Nguyễn Văn A", *, extra: Iterable[x509.NameAttribute] = ()) -> x509.Name:
    """A subject shaped like those of Vietnamese public CAs (UTF8String everywhere except C and serialNumber)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, _PROVINCE),  # UTF8String by default
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.USER_ID, f"MST:{TAX_CODE}"),  # 0.9.2342.19200300.100.1.1
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"CCCD:{CITIZEN_ID}"),  # 2.5.4.5
            *extra,
        ]
    )


def ca_subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tổ chức chứng thực thử nghiệm"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass
class Identity:
    """A certificate with its private key, written to ``cert_path`` / ``key_path`` as PEM."""

    name: str
    key: PrivateKeyTypes
    cert: x509.Certificate
    cert_path: Path
    key_path: Path
    chain: list[Identity] = field(default_factory=list)  # issuers up to but excluding the root

    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_der(self) -> bytes:
        """The private key as unencrypted PKCS#8 DER."""
        return self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def asn1_cert(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.cert_der())

    def pyhanko_signer(self) -> SimpleSigner:
        """A pyHanko signer with this certificate, its key and the intermediate certificates of :attr:`chain`."""
        from pyhanko.sign.signers import SimpleSigner
        from pyhanko_certvalidator.registry import SimpleCertificateStore

        return SimpleSigner(
            signing_cert=self.asn1_cert(),
            signing_key=asn1_keys.PrivateKeyInfo.load(self.key_der()),
            cert_registry=SimpleCertificateStore.from_certs([issuer.asn1_cert() for issuer in self.chain]),
        )


def _write_identity(
    name: str, key: PrivateKeyTypes, cert: x509.Certificate, directory: Path, chain: list[Identity]
) -> Identity:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Identity(name=name, key=key, cert=cert, cert_path=cert_path, key_path=key_path, chain=chain)


def issue_cert(
    issuer: Identity | None,
    name: str,
    directory: Path,
    *,
    key: PrivateKeyTypes | None = None,
    subject_cn: str = "Nguyễn Văn A",
    subject: x509.Name | None = None,
    ca: bool = False,
    path_length: int | None = None,
    key_usage: Iterable[str] | EllipsisType | None = ...,
    key_usage_critical: bool = True,
    ekus: Iterable[x509.ObjectIdentifier] | None = None,
    ekus_critical: bool = False,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    ocsp_nocheck: bool = False,
    hash_alg: hashes.HashAlgorithm | None = hashes.SHA256(),  # noqa: B008 - immutable
    extra_subject: Iterable[x509.NameAttribute] | None = None,
) -> Identity:
    """Issue a certificate (self-signed when ``issuer`` is ``None``) and write it and its key to ``directory``.

    * ``key``: the subject's key; a fresh RSA 2048 key when omitted.
    * ``subject``: the full subject name; by default :func:`ca_subject` for CAs and :func:`signer_subject` (with
      ``extra_subject`` appended) for end entities, both with ``subject_cn`` as CN.
    * ``key_usage``: names of :class:`x509.KeyUsage` bits (``"digital_signature"``, ``"content_commitment"`` for
      nonRepudiation, ...); ``...`` picks keyCertSign+cRLSign for CAs and digitalSignature+nonRepudiation otherwise;
      ``None`` leaves the extension out.
    * ``ekus``: extendedKeyUsage OIDs, absent when ``None``.
    * validity: ``not_before`` defaults to now-1d, ``not_after`` to now+2y (now+10y for CAs).
    * ``ocsp_url`` / ``crl_url``: AIA OCSP and CRLDistributionPoints entries, left out when ``None``.
    * ``hash_alg``: the issuer's signature hash (``None`` for Ed25519 issuers).
    """
    now = _now()
    key = key if key is not None else rsa_key()
    if subject is None:
        subject = ca_subject(subject_cn) if ca else signer_subject(subject_cn, extra=extra_subject or ())
    issuer_name = issuer.cert.subject if issuer else subject
    # ``Any``: PrivateKeyTypes is wider than what the builders accept (DH/X25519 keys cannot sign); the builder checks.
    signing_key: Any = issuer.key if issuer else key
    issuer_public_key: Any = signing_key.public_key()
    subject_public_key: Any = key.public_key()

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + (timedelta(days=3650) if ca else timedelta(days=730)))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    if key_usage is ...:
        key_usage = DEFAULT_CA_KEY_USAGE if ca else DEFAULT_SIGNER_KEY_USAGE
    if key_usage is not None:
        bits = set(key_usage)
        unknown = bits - set(_KEY_USAGE_BITS)
        if unknown:
            raise ValueError(f"unknown keyUsage bits: {sorted(unknown)}")
        builder = builder.add_extension(
            x509.KeyUsage(**{bit: bit in bits for bit in _KEY_USAGE_BITS}), critical=key_usage_critical
        )
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=ekus_critical)
    if crl_url:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_url)], relative_name=None, reasons=None, crl_issuer=None
        )
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url:
        access = x509.AccessDescription(
            x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
    if ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)

    try:
        cert = builder.sign(signing_key, hash_alg)
    except UnsupportedAlgorithm:
        # cryptography refuses to create SHA-1 (and weaker) signatures: sign with SHA-256, then re-sign by hand.
        if hash_alg is None:
            raise
        cert = _resign_certificate(builder.sign(signing_key, hashes.SHA256()), signing_key, hash_alg)
    # The chain stops below the root: a self-signed issuer is not part of it, an intermediate CA is.
    chain = [*issuer.chain, issuer] if issuer is not None and not _is_self_signed(issuer.cert) else []
    return _write_identity(name, key, cert, directory, chain)


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _legacy_algorithm(signing_key: Any, hash_alg: hashes.HashAlgorithm) -> asn1_algos.SignedDigestAlgorithm:
    """The AlgorithmIdentifier of an RSA PKCS#1 v1.5 or ECDSA signature with ``hash_alg``."""
    if isinstance(signing_key, rsa.RSAPrivateKey):
        return asn1_algos.SignedDigestAlgorithm({"algorithm": f"{hash_alg.name}_rsa", "parameters": asn1_core.Null()})
    if isinstance(signing_key, ec.EllipticCurvePrivateKey):
        return asn1_algos.SignedDigestAlgorithm({"algorithm": f"{hash_alg.name}_ecdsa"})
    raise TypeError(f"cannot sign with {hash_alg.name} using {type(signing_key).__name__}")


def _legacy_sign(signing_key: Any, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
    # The low-level sign() still accepts SHA-1, unlike the certificate and CRL builders.
    if isinstance(signing_key, rsa.RSAPrivateKey):
        return signing_key.sign(data, padding.PKCS1v15(), hash_alg)
    return signing_key.sign(data, ec.ECDSA(hash_alg))


def _resign_certificate(cert: x509.Certificate, signing_key: Any, hash_alg: hashes.HashAlgorithm) -> x509.Certificate:
    """``cert`` signed again by ``signing_key`` with a hash the builder refuses (SHA-1, for legacy-signature tests)."""
    algorithm = _legacy_algorithm(signing_key, hash_alg)
    tbs = asn1_x509.TbsCertificate.load(cert.tbs_certificate_bytes)
    tbs["signature"] = algorithm
    tbs_der = tbs.dump(force=True)
    signed = asn1_x509.Certificate(
        {
            "tbs_certificate": asn1_x509.TbsCertificate.load(tbs_der),
            "signature_algorithm": algorithm,
            "signature_value": _legacy_sign(signing_key, tbs_der, hash_alg),
        }
    )
    return x509.load_der_x509_certificate(signed.dump())


def _resign_crl(
    crl: x509.CertificateRevocationList, signing_key: Any, hash_alg: hashes.HashAlgorithm
) -> x509.CertificateRevocationList:
    """Like :func:`_resign_certificate`, for a CRL."""
    algorithm = _legacy_algorithm(signing_key, hash_alg)
    tbs = asn1_crl.TbsCertList.load(crl.tbs_certlist_bytes)
    tbs["signature"] = algorithm
    tbs_der = tbs.dump(force=True)
    signed = asn1_crl.CertificateList(
        {
            "tbs_cert_list": asn1_crl.TbsCertList.load(tbs_der),
            "signature_algorithm": algorithm,
            "signature": _legacy_sign(signing_key, tbs_der, hash_alg),
        }
    )
    return x509.load_der_x509_crl(signed.dump())


def make_crl(
    issuer: Identity,
    revoked: list[tuple[x509.Certificate, datetime]],
    *,
    this_update: datetime | None = None,
    next_update: datetime | None = None,
    reason: x509.ReasonFlags | None = x509.ReasonFlags.key_compromise,
    crl_number: int = 1,
    hash_alg: hashes.HashAlgorithm = hashes.SHA256(),  # noqa: B008 - immutable
) -> x509.CertificateRevocationList:
    """A CRL signed by ``issuer`` listing ``revoked`` (certificate, revocation date), each with ``reason``.

    Defaults: thisUpdate now-1h, nextUpdate now+7d; AuthorityKeyIdentifier and CRLNumber extensions included.
    """
    now = _now()
    signing_key: Any = issuer.key
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(this_update or now - timedelta(hours=1))
        .next_update(next_update or now + timedelta(days=7))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for cert, when in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(when)
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    try:
        return builder.sign(signing_key, hash_alg)
    except UnsupportedAlgorithm:  # SHA-1: see issue_cert
        return _resign_crl(builder.sign(signing_key, hashes.SHA256()), signing_key, hash_alg)


def _write_crl(crl: x509.CertificateRevocationList, directory: Path, stem: str) -> tuple[Path, Path]:
    der_path = directory / f"{stem}.crl"
    pem_path = directory / f"{stem}.crl.pem"
    der_path.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    pem_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return der_path, pem_path


@dataclass
class TestPKI:
    """The whole test hierarchy; see the module docstring."""

    __test__ = False  # not a pytest test class, despite the name

    dir: Path
    root: Identity
    ca: Identity
    tsa: Identity
    ocsp_signer: Identity
    good: Identity
    good_ec: Identity
    revoked: Identity
    expired: Identity
    weak_rsa: Identity
    weak_ec: Identity
    no_signing_usage: Identity
    no_revinfo: Identity
    ca_norev: Identity
    foreign_root: Identity
    foreign: Identity
    crl_path: Path  # DER CRL by ``ca`` listing ``revoked``
    crl_pem_path: Path
    ocsp_url: str | None
    crl_url: str | None
    # Additions to the original spec: the root's own CRL covers ``ca`` and ``ca_norev`` (empty, nothing revoked).
    root_crl_path: Path
    root_crl_pem_path: Path
    root_crl_url: str | None
    revoked_at: datetime  # revocation date of ``revoked`` (now - 1 day)

    @property
    def crl(self) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(self.crl_path.read_bytes())

    @property
    def root_crl(self) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(self.root_crl_path.read_bytes())

    @property
    def crl_paths(self) -> list[Path]:
        """Every CRL needed to establish the status of a whole ``ca`` chain: the ca's CRL and the root's CRL."""
        return [self.crl_path, self.root_crl_path]

    def ca_issued(self) -> list[Identity]:
        """Certificates issued by ``ca`` (the ones the OCSP responder knows about)."""
        return [
            self.tsa,
            self.ocsp_signer,
            self.good,
            self.good_ec,
            self.revoked,
            self.expired,
            self.weak_rsa,
            self.weak_ec,
            self.no_signing_usage,
        ]


def build_pki(
    directory: Path,
    *,
    ocsp_url: str | None = None,
    crl_url: str | None = None,
    root_crl_url: str | None = None,
) -> TestPKI:
    """Generate the whole test PKI into ``directory`` (slow-ish: build it once per session).

    ``ocsp_url`` and ``crl_url`` go into the AIA / CRLDistributionPoints of every ``ca``-issued certificate;
    ``root_crl_url`` into the CRLDistributionPoints of the two intermediate CAs.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    revoked_at = now - timedelta(days=1)
    urls: dict[str, Any] = {"ocsp_url": ocsp_url, "crl_url": crl_url}

    root = issue_cert(None, "root", directory, key=rsa_key(3072), subject_cn="Test Root CA Việt Nam", ca=True)
    ca = issue_cert(
        root, "ca", directory, subject_cn="Test Issuing CA Việt Nam", ca=True, path_length=0, crl_url=root_crl_url
    )
    ca_norev = issue_cert(
        root, "ca_norev", directory, subject_cn="Test CA không có CRL", ca=True, path_length=0, crl_url=root_crl_url
    )
    foreign_root = issue_cert(None, "foreign_root", directory, subject_cn="Foreign Root CA", ca=True)

    tsa = issue_cert(
        ca,
        "tsa",
        directory,
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA Unit"),
            ]
        ),
        ekus=[ExtendedKeyUsageOID.TIME_STAMPING],
        ekus_critical=True,
        **urls,
    )
    ocsp_signer = issue_cert(
        ca,
        "ocsp_signer",
        directory,
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, "Test OCSP Responder"),
            ]
        ),
        key_usage={"digital_signature"},
        ekus=[ExtendedKeyUsageOID.OCSP_SIGNING],
        ocsp_nocheck=True,
        crl_url=crl_url,  # no AIA OCSP: the responder does not vouch for itself (id-pkix-ocsp-nocheck)
    )

    good = issue_cert(ca, "good", directory, subject_cn="Nguyễn Văn A", **urls)
    good_ec = issue_cert(ca, "good_ec", directory, key=ec_key(), subject_cn="Trần Thị Bình", **urls)
    revoked = issue_cert(
        ca,
        "revoked",
        directory,
        subject_cn="Lê Văn Cường",
        not_before=now - timedelta(days=2),  # so that the revocation (now - 1 day) falls inside the validity
        **urls,
    )
    expired = issue_cert(
        ca,
        "expired",
        directory,
        subject_cn="Phạm Thị Dung",
        not_before=now - timedelta(days=3 * 365),
        not_after=now - timedelta(days=365),
        **urls,
    )
    weak_rsa = issue_cert(ca, "weak_rsa", directory, key=rsa_key(1024), subject_cn="Hoàng Văn Em", **urls)
    weak_ec = issue_cert(ca, "weak_ec", directory, key=ec_key(WEAK_EC_CURVE), subject_cn="Vũ Thị Phương", **urls)
    no_signing_usage = issue_cert(
        ca, "no_signing_usage", directory, subject_cn="Đặng Văn Giang", key_usage={"key_encipherment"}, **urls
    )
    no_revinfo = issue_cert(ca_norev, "no_revinfo", directory, subject_cn="Bùi Thị Hà")  # no CRL DP, no AIA
    # Same subject as ``good``: a look-alike from an untrusted hierarchy.
    foreign = issue_cert(foreign_root, "foreign", directory, subject_cn="Nguyễn Văn A")

    crl_path, crl_pem_path = _write_crl(make_crl(ca, [(revoked.cert, revoked_at)]), directory, "ca")
    root_crl_path, root_crl_pem_path = _write_crl(make_crl(root, []), directory, "root")

    return TestPKI(
        dir=directory,
        root=root,
        ca=ca,
        tsa=tsa,
        ocsp_signer=ocsp_signer,
        good=good,
        good_ec=good_ec,
        revoked=revoked,
        expired=expired,
        weak_rsa=weak_rsa,
        weak_ec=weak_ec,
        no_signing_usage=no_signing_usage,
        no_revinfo=no_revinfo,
        ca_norev=ca_norev,
        foreign_root=foreign_root,
        foreign=foreign,
        crl_path=crl_path,
        crl_pem_path=crl_pem_path,
        ocsp_url=ocsp_url,
        crl_url=crl_url,
        root_crl_path=root_crl_path,
        root_crl_pem_path=root_crl_pem_path,
        root_crl_url=root_crl_url,
        revoked_at=revoked_at,
    )


# --------------------------------------------------------------------------------------------------------------------
# OCSP responder / CRL server
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Status:
    """What the responder says about one serial number of ``ca``."""

    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


def _key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents (without the unused-bits octet), as hashed in an OCSP CertID."""
    spki = asn1_keys.PublicKeyInfo.load(
        cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return spki["public_key"].contents[1:]


class PKIServer:
    """HTTP server on 127.0.0.1 (ephemeral port), in a daemon thread, started in ``__enter__``, stopped in ``__exit__``.

    Serves ``POST /ocsp`` and ``GET /ocsp/<url-encoded base64 request>`` (RFC 6960 appendix A), the ``ca`` CRL at
    ``/ca.crl`` (DER), the root CRL at ``/root.crl``, and the CA / root certificates (DER) at ``/ca.crt`` and
    ``/root.crt``. OCSP answers are signed by ``pki.ocsp_signer`` (delegated responder, its certificate included),
    producedAt now, thisUpdate now-1h, nextUpdate now+1d; the status is good / revoked (time and reason from the CRL) /
    unknown for serials or issuers it does not know; a nonce extension in the request is echoed.

    Usage: start the server, ``build_pki`` with its URLs, then :meth:`attach` the PKI. ``hits`` counts requests per
    path (``/ocsp`` for both OCSP forms), successful or not.
    """

    def __init__(self, pki: TestPKI | None = None) -> None:
        self.hits: dict[str, int] = {}
        self.base_url: str = ""
        self._pki: TestPKI | None = None
        self._statuses: dict[int, _Status] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if pki is not None:
            self.attach(pki)

    # -- set-up ------------------------------------------------------------------------------------------------------

    @property
    def pki(self) -> TestPKI:
        if self._pki is None:
            raise RuntimeError("PKIServer.attach(pki) has not been called")
        return self._pki

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/ocsp"

    @property
    def crl_url(self) -> str:
        return f"{self.base_url}/ca.crl"

    @property
    def root_crl_url(self) -> str:
        return f"{self.base_url}/root.crl"

    def attach(self, pki: TestPKI) -> None:
        """Serve ``pki``: every ``ca``-issued certificate is known (good), the CRL entries are revoked."""
        statuses = {identity.cert.serial_number: _Status(ocsp.OCSPCertStatus.GOOD) for identity in pki.ca_issued()}
        for entry in pki.crl:
            reason_ext = entry.extensions.get_extension_for_class(x509.CRLReason) if entry.extensions else None
            statuses[entry.serial_number] = _Status(
                ocsp.OCSPCertStatus.REVOKED,
                revoked_at=entry.revocation_date_utc,
                reason=reason_ext.value.reason if reason_ext else None,
            )
        with self._lock:
            self._pki = pki
            self._statuses = statuses

    def register(
        self,
        cert: x509.Certificate,
        *,
        revoked_at: datetime | None = None,
        reason: x509.ReasonFlags | None = None,
    ) -> None:
        """Make the responder know one more ``ca``-issued certificate (e.g. one made with :func:`issue_cert`)."""
        if revoked_at is None:
            status = _Status(ocsp.OCSPCertStatus.GOOD)
        else:
            status = _Status(ocsp.OCSPCertStatus.REVOKED, revoked_at=revoked_at, reason=reason)
        with self._lock:
            self._statuses[cert.serial_number] = status

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> PKIServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="pki-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    # -- request handling --------------------------------------------------------------------------------------------

    def _count(self, path: str) -> None:
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

            def _send(self, status: int, body: bytes = b"", content_type: str = "application/octet-stream") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                if path == "/ocsp" or path.startswith("/ocsp/"):
                    server._count("/ocsp")
                    encoded = urllib.parse.unquote(path[len("/ocsp/") :])
                    try:
                        der = base64.b64decode(encoded, validate=True)
                    except (binascii.Error, ValueError):
                        der = b""
                    self._send(200, server._ocsp_response(der), "application/ocsp-response")
                    return
                server._count(path)
                document = server._document(path)
                if document is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    self._send(200, *document)

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                server._count(path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if path != "/ocsp":
                    self._send(404, b"not found", "text/plain")
                    return
                self._send(200, server._ocsp_response(body), "application/ocsp-response")

        return Handler

    def _document(self, path: str) -> tuple[bytes, str] | None:
        pki = self._pki
        if pki is None:
            return None
        documents = {
            "/ca.crl": (pki.crl_path.read_bytes(), "application/pkix-crl"),
            "/root.crl": (pki.root_crl_path.read_bytes(), "application/pkix-crl"),
            "/ca.crt": (pki.ca.cert_der(), "application/pkix-cert"),
            "/root.crt": (pki.root.cert_der(), "application/pkix-cert"),
        }
        return documents.get(path)

    def _ocsp_response(self, der: bytes) -> bytes:
        """The DER OCSP response to a DER OCSP request (malformedRequest when it cannot be parsed)."""
        try:
            request = ocsp.load_der_ocsp_request(der)
            algorithm = request.hash_algorithm
            serial = request.serial_number
        except Exception:  # ValueError, UnsupportedAlgorithm, ... : anything unparseable is malformed
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(
                serialization.Encoding.DER
            )
        with self._lock:
            pki = self._pki
            status = self._statuses.get(serial)
        if pki is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(
                serialization.Encoding.DER
            )

        # The responder only speaks for ``ca``: another issuer's serial is unknown whatever its value.
        ours = (
            request.issuer_name_hash == hashlib.new(algorithm.name, pki.ca.cert.subject.public_bytes()).digest()
            and request.issuer_key_hash == hashlib.new(algorithm.name, _key_bits(pki.ca.cert)).digest()
        )
        if not ours or status is None:
            status = _Status(ocsp.OCSPCertStatus.UNKNOWN)

        now = _now()
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                issuer_name_hash=request.issuer_name_hash,
                issuer_key_hash=request.issuer_key_hash,
                serial_number=serial,
                algorithm=algorithm,
                cert_status=status.status,
                this_update=now - timedelta(hours=1),
                next_update=now + timedelta(days=1),
                revocation_time=status.revoked_at,
                revocation_reason=status.reason,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, pki.ocsp_signer.cert)
            .certificates([pki.ocsp_signer.cert])
        )
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce)
        except x509.ExtensionNotFound:
            pass
        else:
            builder = builder.add_extension(nonce.value, critical=False)
        signing_key: Any = pki.ocsp_signer.key  # an RSA key, see build_pki
        return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def iter_identities(pki: TestPKI) -> Iterator[Identity]:
    """Every identity of ``pki``, roots included (handy for parametrised tests)."""
    for name in (
        "root",
        "ca",
        "tsa",
        "ocsp_signer",
        "good",
        "good_ec",
        "revoked",
        "expired",
        "weak_rsa",
        "weak_ec",
        "no_signing_usage",
        "no_revinfo",
        "ca_norev",
        "foreign_root",
        "foreign",
    ):
        yield getattr(pki, name)
