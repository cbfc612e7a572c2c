"""The validation policy shared by every signature format.

One place states what the province accepts: the national minimum algorithm strength (Circular 15/2025/TT-BKHCN),
hard-fail revocation for every certificate below the trust anchor, and one key-usage rule for signers.
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import algos, keys
from pyhanko.sign.validation import KeyUsageConstraints
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    AlgorithmUsageConstraint,
    CertRevTrustPolicy,
    DisallowWeakAlgorithmsPolicy,
)

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
WEAK_DIGESTS = frozenset({"md2", "md4", "md5", "sha1"})

#: The signer's certificate must allow signing: digitalSignature or nonRepudiation (either suffices).
SIGNING_KEY_USAGES = frozenset({"digital_signature", "non_repudiation"})


class NationalAlgorithmPolicy(DisallowWeakAlgorithmsPolicy):
    """Refuses MD5/SHA-1 digests, RSA keys under 2048 bits and elliptic-curve keys under 256 bits."""

    def __init__(self) -> None:
        super().__init__(weak_hash_algos=WEAK_DIGESTS, rsa_key_size_threshold=MIN_RSA_BITS)

    def signature_algorithm_allowed(
        self,
        algo: algos.SignedDigestAlgorithm,
        moment: datetime | None,
        public_key: keys.PublicKeyInfo | None,
    ) -> AlgorithmUsageConstraint:
        verdict = super().signature_algorithm_allowed(algo, moment, public_key)
        if not verdict.allowed or public_key is None:
            return verdict
        if public_key.algorithm == "ec":
            bits = public_key.bit_size
            if bits < MIN_EC_BITS:
                return AlgorithmUsageConstraint(
                    allowed=False,
                    failure_reason=(f"Elliptic-curve key of {bits} bits is below the minimum of {MIN_EC_BITS}"),
                )
        return verdict


ALGORITHM_POLICY = NationalAlgorithmPolicy()

#: Revocation status is required for every certificate below the anchor (CRL or OCSP): no status, no trust.
REVOCATION_POLICY = CertRevTrustPolicy(REQUIRE_REVINFO)

KEY_USAGE = KeyUsageConstraints(
    key_usage=set(SIGNING_KEY_USAGES),
    match_all_key_usages=False,
    # Extended key usage is not constrained for signers: Vietnamese CAs issue signing certificates
    # with and without EKU, and the key usage bits are what the policy requires.
)


def weak_key_reason(public_key: keys.PublicKeyInfo) -> str | None:
    """Why a signer's public key is below the national minimum, or ``None`` when it is strong enough."""
    algorithm = public_key.algorithm
    bits = public_key.bit_size
    if algorithm == "rsa" and bits < MIN_RSA_BITS:
        return f"RSA key of {bits} bits is below the minimum of {MIN_RSA_BITS}"
    if algorithm == "ec" and bits < MIN_EC_BITS:
        return f"Elliptic-curve key of {bits} bits is below the minimum of {MIN_EC_BITS}"
    if algorithm == "dsa":
        return "DSA keys are not accepted"
    return None


def weak_digest_reason(digest_name: str) -> str | None:
    """Why a digest algorithm is below the national minimum, or ``None``."""
    name = digest_name.lower().replace("-", "")
    if name in WEAK_DIGESTS:
        return f"Digest algorithm {digest_name} is below the national minimum"
    return None
