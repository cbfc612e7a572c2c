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

The hierarchy lives in :mod:`tests.pki_hierarchy`, keys, certificates and CRLs in :mod:`tests.pki_certificates`
and the server in :mod:`tests.pki_server`; every public name is importable from here.
"""

from __future__ import annotations

from tests.pki_certificates import (
    CITIZEN_ID,
    DEFAULT_CA_KEY_USAGE,
    DEFAULT_SIGNER_KEY_USAGE,
    TAX_CODE,
    WEAK_EC_CURVE,
    Identity,
    ca_subject,
    ec_key,
    issue_cert,
    make_crl,
    rsa_key,
    signer_subject,
)
from tests.pki_hierarchy import TestPKI, build_pki, iter_identities
from tests.pki_server import PKIServer

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
