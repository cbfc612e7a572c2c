"""The whole throw-away test hierarchy, :class:`TestPKI`, and :func:`build_pki` (see :mod:`tests.pki`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.pki_certificates import (
    _ORGANIZATION,
    WEAK_EC_CURVE,
    Identity,
    _now,
    _write_crl,
    ec_key,
    issue_cert,
    make_crl,
    rsa_key,
)


@dataclass
class TestPKI:
    """The whole test hierarchy; see the :mod:`tests.pki` docstring."""

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
