"""XML signatures whose KeyInfo does not carry the signer's certificate."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLSigner
from signxml.xades import XAdESSigner

from signing.report import Indication, SubIndication, Verdict
from signing.xml import validate_xml
from tests.reports import only, outcome
from tests.test_signing_xml import FORM, NS, edit, store  # noqa: F401  (store: the fixture)

MISSING_SIGNER = (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND)


def _pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _signed_with_keyinfo(identity, certs, signer: XMLSigner | None = None) -> bytes:
    """``FORM`` signed with ``identity``'s key, KeyInfo carrying ``certs`` (identities) only."""
    key = identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = signer or XMLSigner()
    signed = signer.sign(etree.fromstring(FORM), key=key, cert=[_pem(c.cert) for c in certs])
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


async def test_keyinfo_with_only_the_issuing_ca_is_a_missing_signer_certificate(pki, store):  # noqa: F811
    report = await validate_xml(_signed_with_keyinfo(pki.good, [pki.ca]), store)
    sig = only(report)
    assert outcome(report) == MISSING_SIGNER, report.to_json()
    assert sig.warnings and "the signer's certificate is missing" in sig.warnings[0]
    assert report.message["en"] == "Signature not trusted: the signer's certificate is missing."


async def test_xades_with_the_ca_chain_but_not_the_signer(pki, store):  # noqa: F811
    report = await validate_xml(_signed_with_keyinfo(pki.good, [pki.ca, pki.root], XAdESSigner()), store)
    assert outcome(report) == MISSING_SIGNER, report.to_json()


async def test_a_broken_value_with_the_signer_certificate_says_why(pki, store):  # noqa: F811
    def flip(root):
        node = root.find(".//ds:SignatureValue", NS)
        value = list(node.text)
        value[20] = "A" if value[20] != "A" else "B"
        node.text = "".join(value)

    report = await validate_xml(edit(_signed_with_keyinfo(pki.good, [pki.good, pki.ca]), flip), store)
    sig = only(report)
    assert outcome(report) == (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE)
    assert len(sig.warnings) == 1
    assert not sig.warnings[0].rstrip().endswith(":"), sig.warnings
    assert "does not verify" in sig.warnings[0]
