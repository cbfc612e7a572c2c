"""Keys, subjects, certificates and CRLs of the throw-away test PKI (see :mod:`tests.pki`).

``weak_ec`` uses NIST P-192 (SECP192R1) when the installed OpenSSL can generate such keys, else P-224 (SECP224R1);
:data:`WEAK_EC_CURVE` tells which one was used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import EllipsisType
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
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from pyhanko.sign.signers import SimpleSigner


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
    extensions: Iterable[x509.ExtensionType] = (),
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
    * ``extensions``: further non-critical extensions (an :class:`x509.UnrecognizedExtension` for any other kind).
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
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)

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
