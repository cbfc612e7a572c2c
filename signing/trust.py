"""The trust store: configured anchors, intermediates and revocation data, parsed once and shared.

Trust comes only from the anchors configured here (in Vietnam, the national root CA and the Government Cipher
Committee's specialised root), never from a system or ``certifi`` store. Every format validates its signers'
certificates through the one :class:`SignatureValidationSpec` built here, so all formats share one trust decision.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from asn1crypto import crl, ocsp, pem, x509

from .asn1types import register_object_identifiers
from .limits import DEFAULT_LIMITS, Limits
from .settings import TrustSettings

if TYPE_CHECKING:
    from pyhanko.sign.validation.policy_decl import SignatureValidationSpec
    from pyhanko_certvalidator.context import CertValidationPolicySpec

    from .fetchers import HttpxFetcherBackend

__all__ = ["TrustMaterialError", "TrustSettings", "TrustStore", "load_certificates", "load_crls"]

CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")
CRL_SUFFIXES = (".crl", ".pem", ".der")
#: Clock drift tolerated between signers, CAs and this machine.
TIME_TOLERANCE = timedelta(minutes=2)


class TrustMaterialError(ValueError):
    """A configured anchor, certificate or CRL is missing or unreadable (a configuration error)."""


def _blocks(data: bytes) -> list[bytes]:
    """DER payloads from PEM (one or many blocks) or from raw DER."""
    if pem.detect(data):
        return [der for _, _, der in pem.unarmor(data, multiple=True)]
    return [data]


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    if path.is_file():
        return [path]
    raise TrustMaterialError(f"{path}: no such file or directory")


def load_certificates(paths: Iterable[str | Path]) -> list[x509.Certificate]:
    """Certificates from PEM/DER files or directories of them."""
    register_object_identifiers(validators=False)  # before parsing; the validators' names come with them
    certs: list[x509.Certificate] = []
    for entry in paths:
        for file in _files(Path(entry), CERT_SUFFIXES):
            try:
                for der in _blocks(file.read_bytes()):
                    cert = x509.Certificate.load(der)
                    cert.native  # noqa: B018 - force a full parse so bad input fails here
                    certs.append(cert)
            except (OSError, ValueError, TypeError) as exc:
                raise TrustMaterialError(f"{file}: not a readable certificate ({exc})") from exc
    return certs


def load_crls(paths: Iterable[str | Path]) -> list[crl.CertificateList]:
    """CRLs from PEM/DER files or directories of them."""
    register_object_identifiers(validators=False)
    crls: list[crl.CertificateList] = []
    for entry in paths:
        for file in _files(Path(entry), CRL_SUFFIXES):
            try:
                for der in _blocks(file.read_bytes()):
                    item = crl.CertificateList.load(der)
                    item["tbs_cert_list"]["this_update"].native  # noqa: B018 - fail early
                    crls.append(item)
            except (OSError, ValueError, TypeError) as exc:
                raise TrustMaterialError(f"{file}: not a readable CRL ({exc})") from exc
    return crls


class PathCache:
    """Signer certificates whose path validated recently, with the path, so a batch of documents by the same signer
    pays for path building and revocation checking once.

    An entry is keyed by the signer's certificate *and* the certificates the document itself supplied, so a document
    never profits from intermediates another document carried: the verdict does not depend on the order of documents.
    Only successes are kept, for at most :attr:`ttl` and never past the time the entry was computed for by more than
    that (a certificate that expires or a CRL that goes stale meanwhile is noticed within the TTL at worst).
    """

    def __init__(self, ttl: timedelta = timedelta(seconds=60), size: int = 256) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[tuple[bytes, ...], tuple[datetime, object]] = {}

    @staticmethod
    def key(signer: x509.Certificate, others: Iterable[x509.Certificate]) -> tuple[bytes, ...]:
        return (signer.sha256, *sorted(cert.sha256 for cert in others))

    def get(self, key: tuple[bytes, ...], at: datetime) -> object | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        when, value = entry
        if not when <= at <= when + self.ttl:
            self._entries.pop(key, None)
            return None
        return value

    def put(self, key: tuple[bytes, ...], at: datetime, value: object) -> None:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (at, value)


@dataclass(eq=False)
class TrustStore:
    """Parsed trust material and the validation specification built from it, reused across documents."""

    anchors: list[x509.Certificate]
    intermediates: list[x509.Certificate] = field(default_factory=list)
    crls: list[crl.CertificateList] = field(default_factory=list)
    ocsps: list[ocsp.OCSPResponse] = field(default_factory=list)
    online_revocation: bool = False
    fetch_timeout_seconds: float = 10.0
    #: Size caps checked before parsing.
    limits: Limits = DEFAULT_LIMITS
    #: Certification paths found valid recently, reused across documents (see :class:`PathCache`).
    path_cache: PathCache = field(default_factory=lambda: PathCache(), repr=False, compare=False)
    #: The issuers of the store's CRLs, as recent successful validations established them (see
    #: :meth:`crl_issuer_cache`).
    crl_issuers: PathCache = field(default_factory=lambda: PathCache(), repr=False, compare=False)

    @classmethod
    def load(cls, settings: TrustSettings) -> TrustStore:
        """The material ``settings`` names, read and parsed (:class:`TrustMaterialError` when unreadable)."""
        return cls(
            anchors=load_certificates(settings.trust_anchors),
            intermediates=load_certificates(settings.intermediates),
            crls=load_crls(settings.crls),
            online_revocation=settings.online_revocation,
            fetch_timeout_seconds=settings.fetch_timeout_seconds,
            limits=settings.limits,
        )

    def extended(
        self,
        *,
        anchors: Iterable[x509.Certificate] = (),
        certs: Iterable[x509.Certificate] = (),
        crls: Iterable[crl.CertificateList] = (),
    ) -> TrustStore:
        """A new store with extra material (a CLI call's ``--cert``/``--crl``); this one is unchanged."""
        return TrustStore(
            anchors=[*self.anchors, *anchors],
            intermediates=[*self.intermediates, *certs],
            crls=[*self.crls, *crls],
            ocsps=list(self.ocsps),
            online_revocation=self.online_revocation,
            fetch_timeout_seconds=self.fetch_timeout_seconds,
            limits=self.limits,
        )

    def crl_issuer_cache(self, spec: SignatureValidationSpec) -> PathCache | None:
        """Where a validation with ``spec`` may find and leave the issuers of the store's CRLs, or ``None``.

        Checking which certificate issued a CRL (its issuer's certification path, then the CRL's signature) is the
        same work for every document by one signer; pyHanko remembers the answer by the CRL's signature value. It is
        shared only while ``spec`` knows the store's revocation data and nothing else: no CRL a document carried or
        a fetcher brought could then pass as one of the store's by copying its signature value. Entries are keyed
        by the certificates the document supplied (:func:`signing.adesval.crl_issuer_key`) and kept like
        certification paths (:class:`PathCache`): only after a successful validation, for a short time.
        """
        if self.online_revocation or spec.local_knowledge is not self.spec.local_knowledge:
            return None
        return self.crl_issuers

    @cached_property
    def fetcher_backend(self) -> HttpxFetcherBackend | None:
        """One fetcher backend for the store's lifetime, so fetched CRLs/OCSP answers are cached across documents."""
        if not self.online_revocation:
            return None
        from .fetchers import HttpxFetcherBackend

        return HttpxFetcherBackend(timeout_seconds=self.fetch_timeout_seconds)

    # pyHanko's validation modules are imported where a validation is specified, not with this module: loading
    # ``pyhanko.sign`` loads its signers and their HTTP clients too (about 0.4 s), which a process that only reads
    # trust material never uses (the daemon's: its validations run in the signature workers).

    @cached_property
    def cert_policy(self) -> CertValidationPolicySpec:
        from pyhanko_certvalidator.context import CertValidationPolicySpec
        from pyhanko_certvalidator.registry import SimpleTrustManager

        from .policy import ALGORITHM_POLICY, REVOCATION_POLICY

        return CertValidationPolicySpec(
            trust_manager=SimpleTrustManager.build(trust_roots=self.anchors),
            revinfo_policy=REVOCATION_POLICY,
            time_tolerance=TIME_TOLERANCE,
            algorithm_usage_policy=ALGORITHM_POLICY,
        )

    @cached_property
    def spec(self) -> SignatureValidationSpec:
        """The one validation specification every format uses."""
        from pyhanko.sign.validation.policy_decl import (
            CertificateFetchingRule,
            LocalKnowledge,
            RevinfoOnlineFetchingRule,
            RevocationInfoGatheringSpec,
            SignatureValidationSpec,
        )
        from pyhanko.sign.validation.utils import CMSAlgorithmUsagePolicy
        from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

        from .policy import ALGORITHM_POLICY, KEY_USAGE

        if self.online_revocation:
            gathering = RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH,
                fetcher_backend=self.fetcher_backend,
                certificate_fetching_rule=CertificateFetchingRule.FOLLOW_ONLINE_RULE,
            )
        else:
            gathering = RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY,
                certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH,
            )
        return SignatureValidationSpec(
            cert_validation_policy=self.cert_policy,
            ts_cert_validation_policy=self.cert_policy,
            revinfo_gathering_policy=gathering,
            local_knowledge=LocalKnowledge(
                known_crls=[CRLContainer(c) for c in self.crls],
                known_ocsps=[OCSPContainer(o) for o in self.ocsps],
                known_certs=list(self.intermediates),
            ),
            key_usage_settings=KEY_USAGE,
            signature_algorithm_policy=CMSAlgorithmUsagePolicy.lift_policy(ALGORITHM_POLICY),
        )
