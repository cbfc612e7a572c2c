"""XAdES counter-signatures: one signs its parent signature's ``SignatureValue`` (ETSI EN 319 132-1 §5.2.7), and a
counter-signature that signs anything else, or a reference typed ``CountersignedSignature`` in a signature that
counter-signs nothing, makes the document invalid: the signature is not what it claims to be."""

from __future__ import annotations

from lxml import etree
from signxml.xades import XAdESSigner

from signing.report import SubIndication, Verdict
from signing.xml import validate_xml
from tests.test_signing_xml import FORM, _cert_pems, _key_pem, store  # noqa: F401 - the store fixture

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
COUNTERSIGNED = "http://uri.etsi.org/01903#CountersignedSignature"


def _signed(identity, form: bytes = FORM) -> etree._Element:
    root = XAdESSigner().sign(etree.fromstring(form), key=_key_pem(identity), cert=_cert_pems(identity))
    return etree.fromstring(etree.tostring(root))


def _countersigned(identity, root: etree._Element, target: str, *, typed: bool = True) -> bytes:
    """``root``'s signature counter-signed by ``identity`` where XAdES puts counter-signatures, the counter-signature's
    reference pointing at ``target`` (an ``Id``; typed ``CountersignedSignature`` unless ``typed`` is false)."""

    class CounterSigner(XAdESSigner):
        def _build_sig(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            signed_info, signature_value = super()._build_sig(*args, **kwargs)
            for reference in signed_info.iter(f"{{{DS}}}Reference"):
                if typed and reference.get("URI") == f"#{target}":  # before the value is computed over SignedInfo
                    reference.set("Type", COUNTERSIGNED)
            return signed_info, signature_value

    properties = root.find(f"{{{DS}}}Signature").find(f".//{{{XADES}}}QualifyingProperties")
    unsigned = etree.SubElement(
        etree.SubElement(properties, f"{{{XADES}}}UnsignedProperties"), f"{{{XADES}}}UnsignedSignatureProperties"
    )
    etree.SubElement(etree.SubElement(unsigned, f"{{{XADES}}}CounterSignature"), f"{{{DS}}}Signature", Id="placeholder")
    signed = CounterSigner().sign(root, key=_key_pem(identity), cert=_cert_pems(identity), reference_uri=[f"#{target}"])
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


async def test_a_counter_signature_over_its_parents_signature_value_is_valid(pki, store) -> None:  # noqa: F811
    root = _signed(pki.good)
    value = root.find(f"{{{DS}}}Signature/{{{DS}}}SignatureValue")
    value.set("Id", "value-1")
    document = _countersigned(pki.good, root, "value-1")
    report = await validate_xml(document, store)
    assert [s.indication.name for s in report.signatures] == ["TOTAL_PASSED", "TOTAL_PASSED"], report


async def test_a_counter_signature_over_anything_else_is_invalid(pki, store) -> None:  # noqa: F811
    for typed in (True, False):
        root = _signed(pki.good, FORM.replace(b"<HoTen>", b"<HoTen Id='name'>"))
        document = _countersigned(pki.good, root, "name", typed=typed)
        report = await validate_xml(document, store)
        assert report.verdict is Verdict.INVALID
        parent, counter = report.signatures
        assert parent.indication.name == "TOTAL_PASSED"
        assert counter.sub_indication is SubIndication.FORMAT_FAILURE
        assert counter.warnings == (
            "a counter-signature must sign its parent signature's SignatureValue; this one signs another element",
        )


async def test_a_countersigned_reference_in_a_signature_that_counter_signs_nothing_is_invalid(pki, store) -> None:  # noqa: F811
    class Claiming(XAdESSigner):
        def _build_sig(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            signed_info, signature_value = super()._build_sig(*args, **kwargs)
            signed_info.find(f"{{{DS}}}Reference").set("Type", COUNTERSIGNED)
            return signed_info, signature_value

    root = Claiming().sign(etree.fromstring(FORM), key=_key_pem(pki.good), cert=_cert_pems(pki.good))
    report = await validate_xml(etree.tostring(root), store)
    assert report.verdict is Verdict.INVALID
    [signature] = report.signatures
    assert signature.sub_indication is SubIndication.FORMAT_FAILURE
    assert signature.warnings == ("a reference typed CountersignedSignature in a signature that counter-signs nothing",)
