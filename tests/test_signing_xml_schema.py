"""A signature the XML Signature schema refuses is refused, and when the check without the schema finds a changed
reference or a broken value, the report says that first: a clerk learns the form was changed, not only that its
signature is malformed."""

from __future__ import annotations

from lxml import etree

from signing.report import SubIndication, Verdict
from signing.xml import validate_xml
from tests.test_signing_xml import FORM, sign, store  # noqa: F401 - the store fixture

DS = "http://www.w3.org/2000/09/xmldsig#"


def _off_schema(document: bytes, *, changed: bool) -> bytes:
    """``document`` with an element the schema does not allow after the signature value (outside what is signed),
    and with its content changed too when ``changed``."""
    root = etree.fromstring(document)
    value = root.find(f".//{{{DS}}}SignatureValue")
    value.addnext(etree.Element(f"{{{DS}}}Unexpected"))
    if changed:
        root.find("{urn:dvc:tokhai}HoTen").text = "Trần Thị B"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def test_an_intact_signature_off_schema_is_a_format_failure(pki, store) -> None:  # noqa: F811
    report = await validate_xml(_off_schema(sign(pki.good), changed=False), store)
    assert report.verdict is Verdict.INVALID
    [signature] = report.signatures
    assert signature.sub_indication is SubIndication.FORMAT_FAILURE
    [warning] = signature.warnings
    assert warning.startswith("the signature does not follow the XML Signature schema (") and "Unexpected" in warning


async def test_a_changed_form_whose_signature_is_off_schema_says_it_was_changed(pki, store) -> None:  # noqa: F811
    report = await validate_xml(_off_schema(sign(pki.good), changed=True), store)
    assert report.verdict is Verdict.MODIFIED
    [signature] = report.signatures
    assert signature.sub_indication is SubIndication.HASH_FAILURE
    assert signature.warnings[0].startswith("Digest mismatch")
    assert signature.warnings[1].startswith("the signature does not follow the XML Signature schema (")
