"""XML-DSig and XAdES signatures on XML forms (tờ khai)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest
import signxml
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLSigner, XMLVerifier, methods
from signxml.xades import XAdESSigner

from adapters.xmlguard import UnsafeXMLError, XMLRefusedError, parse_xml
from signing import xml as xml_module
from signing.report import Format, Indication, Revocation, SubIndication, Verdict
from signing.trust import TrustStore, load_crls
from signing.verify import verify_document
from signing.xml import validate_xml, validate_xml_content
from tests.reports import (
    FORMAT_FAILURE,
    REVOCATION_UNKNOWN,
    VALID,
    WEAK_CRYPTO,
    only,
    outcome,
)

DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"ds": DS, "t": "urn:dvc:tokhai"}

FORM = (
    "<ToKhai xmlns='urn:dvc:tokhai'>"
    "<MaTTHC>1.009794</MaTTHC>"
    "<HoTen>Nguyễn Văn A</HoTen>"
    "<SoCCCD>001099012345</SoCCCD>"
    "<DiaChi>Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội</DiaChi>"
    "<NoiDung>Đề nghị cấp giấy phép xây dựng nhà ở riêng lẻ</NoiDung>"
    "</ToKhai>"
).encode()


# --- fixtures and signing helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], crls=load_crls(pki.crl_paths))


def _key_pem(identity) -> bytes:
    return identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pems(identity) -> list[str]:
    """The signer's certificate followed by its issuing CAs, as signxml wants them in KeyInfo."""
    chain = [identity.cert, *(issuer.cert for issuer in identity.chain)]
    return [cert.public_bytes(serialization.Encoding.PEM).decode() for cert in chain]


def sign(identity, data: bytes = FORM, *, signer: XMLSigner | None = None, **options) -> bytes:
    """``data`` signed by ``identity`` (enveloped XML-DSig, RSA-SHA256, unless ``signer`` says otherwise)."""
    signer = signer or XMLSigner()
    signed = signer.sign(etree.fromstring(data), key=_key_pem(identity), cert=_cert_pems(identity), **options)
    return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


class LegacySigner(XMLSigner):
    """signxml refuses to create SHA-1 signatures; old signing tools still do."""

    def check_deprecated_methods(self) -> None:
        pass


def edit(data: bytes, change) -> bytes:
    """Parse ``data`` (trusted test input), let ``change(root)`` mutate it, serialise again."""
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --- valid forms ---------------------------------------------------------------------------------------------------


async def test_enveloped_signature_by_a_trusted_signer_is_valid(pki, store):
    report = await validate_xml(sign(pki.good), store, file="tokhai.xml")
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert report.format is Format.XMLDSIG
    assert report.file == "tokhai.xml"
    assert report.originals_check_required is False
    assert sig.signer.common_name == "Nguyễn Văn A"
    assert sig.signer.identifiers == {"tax_code": "0101234567", "citizen_id": "001099012345"}
    assert sig.revocation is Revocation.GOOD
    assert sig.covers_whole_document is True
    assert len(sig.chain) == 3
    assert sig.signing_time is None  # plain XML-DSig carries no signing time


async def test_enveloped_signature_over_the_root_id_is_valid(pki, store):
    data = FORM.replace(b"<ToKhai ", b"<ToKhai Id='tk' ")
    signed = sign(pki.good, data)
    assert b'URI="#tk"' in signed
    assert outcome(await validate_xml(signed, store)) == VALID


async def test_enveloping_signature_is_valid(pki, store):
    signed = sign(pki.good, signer=XMLSigner(method=methods.enveloping))
    assert etree.fromstring(signed).tag == f"{{{DS}}}Signature"
    validation = await validate_xml_content(signed, store)
    assert outcome(validation.report) == VALID, validation.report.to_json()
    content = validation.signed_content()
    assert len(content) == 1 and "Nguyễn Văn A".encode() in content[0].data


async def test_xades_bes_is_valid_with_its_signing_time(pki, store):
    signed = sign(pki.good, signer=XAdESSigner())
    report = await validate_xml(signed, store)
    sig = only(report)
    assert outcome(report) == VALID, report.to_json()
    assert report.format is Format.XADES
    assert report.to_json()["format"] == "xades"
    assert sig.signing_time is not None
    assert abs(sig.signing_time - datetime.now(UTC)) < timedelta(minutes=5)


async def test_ecdsa_p256_signer_is_valid(pki, store):
    signed = sign(pki.good_ec, signer=XMLSigner(signature_algorithm="ecdsa-sha256"))
    report = await validate_xml(signed, store)
    assert outcome(report) == VALID, report.to_json()
    assert only(report).signer.common_name == "Trần Thị Bình"


async def test_signature_over_a_part_inside_a_bare_container_is_valid(pki, store):
    data = "<HoSo xmlns='urn:dvc:tokhai'><ToKhai Id='tk'><HoTen>Nguyễn Văn A</HoTen></ToKhai></HoSo>".encode()
    signed = sign(pki.good, data, reference_uri="#tk")
    assert outcome(await validate_xml(signed, store)) == VALID


async def test_two_signers_on_two_parts_are_both_reported(pki, store):
    data = (
        "<HoSo xmlns='urn:dvc:tokhai'>"
        "<ToKhai Id='a'><HoTen>Nguyễn Văn A</HoTen></ToKhai>"
        "<XacNhan Id='b'><CanBo>Lê Văn Cường</CanBo></XacNhan>"
        "</HoSo>"
    ).encode()
    once = sign(pki.good, data, reference_uri="#a")
    twice = sign(pki.revoked, once, reference_uri="#b")
    report = await validate_xml(twice, store)
    assert [s.verdict for s in report.signatures] == [Verdict.VALID, Verdict.REVOKED]
    assert report.verdict is Verdict.REVOKED
    assert all(s.covers_whole_document for s in report.signatures)


# --- changed documents ---------------------------------------------------------------------------------------------


async def test_text_changed_after_signing_is_modified(pki, store):
    signed = sign(pki.good)
    tampered = signed.replace("Nguyễn Văn A".encode(), "Nguyễn Văn B".encode())
    assert tampered != signed
    report = await validate_xml(tampered, store)
    assert outcome(report) == (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)
    assert only(report).signer.common_name == "Nguyễn Văn A"


async def test_xades_text_changed_after_signing_is_modified(pki, store):
    signed = sign(pki.good, signer=XAdESSigner())
    tampered = signed.replace(b"1.009794", b"1.009795")
    report = await validate_xml(tampered, store)
    assert outcome(report) == (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.HASH_FAILURE)


async def test_broken_signature_value_is_invalid(pki, store):
    def flip(root):
        node = root.find(".//ds:SignatureValue", NS)
        value = list(node.text)
        value[20] = "A" if value[20] != "A" else "B"
        node.text = "".join(value)

    report = await validate_xml(edit(sign(pki.good), flip), store)
    assert outcome(report) == (Verdict.INVALID, Indication.TOTAL_FAILED, SubIndication.SIG_CRYPTO_FAILURE)


async def test_unsigned_element_added_after_signing_is_not_valid(pki, store):
    data = "<HoSo xmlns='urn:dvc:tokhai'><ToKhai Id='tk'><HoTen>Nguyễn Văn A</HoTen></ToKhai></HoSo>".encode()
    signed = sign(pki.good, data, reference_uri="#tk")

    def add_note(root):
        note = etree.SubElement(root, "{urn:dvc:tokhai}GhiChu")
        note.text = "Miễn lệ phí"

    report = await validate_xml(edit(signed, add_note), store)
    sig = only(report)
    assert report.verdict is Verdict.MODIFIED
    assert sig.covers_whole_document is False
    assert report.originals_check_required is True


async def test_signature_wrapping_attack_is_not_valid(pki, store):
    """The signed form is moved aside, a forged one takes its place: the signature still verifies, but only over the
    hidden original; the forged content is neither covered nor ever handed out as signed."""
    data = FORM.replace(b"<ToKhai ", b"<ToKhai Id='tk' ")
    signed = sign(pki.good, data)
    assert outcome(await validate_xml(signed, store)) == VALID

    original = etree.fromstring(signed)
    signature = original.find("ds:Signature", NS)
    original.remove(signature)
    forged = etree.Element("{urn:dvc:tokhai}ToKhai", Id="forged", nsmap={None: "urn:dvc:tokhai"})
    etree.SubElement(forged, "{urn:dvc:tokhai}HoTen").text = "Kẻ Gian"
    etree.SubElement(forged, "{urn:dvc:tokhai}SoTien").text = "0"
    forged.append(signature)
    etree.SubElement(forged, "{urn:dvc:tokhai}Goc").append(original)  # the signed original, out of sight
    attacked = etree.tostring(forged, xml_declaration=True, encoding="UTF-8")

    validation = await validate_xml_content(attacked, store)
    report = validation.report
    sig = only(report)
    assert report.verdict is not Verdict.VALID
    assert report.verdict is Verdict.MODIFIED
    assert sig.covers_whole_document is False
    assert report.originals_check_required is True
    # What the signature covers is the original, never the forged content; and nothing is handed out as signed.
    (part,) = validation.signed_parts[0]
    assert "Nguyễn Văn A".encode() in part.data
    assert "Kẻ Gian".encode() not in part.data
    assert validation.signed_content() == ()


async def test_content_slipped_into_an_enveloped_signature_is_not_valid(pki, store):
    """The enveloped-signature transform leaves the signature out of its own digest: a ds:Object added there
    verifies, but it is unsigned content."""

    def slip(root):
        obj = etree.SubElement(root.find("ds:Signature", NS), f"{{{DS}}}Object")
        etree.SubElement(obj, "{urn:dvc:tokhai}HoTen").text = "Kẻ Gian"

    validation = await validate_xml_content(edit(sign(pki.good), slip), store)
    sig = only(validation.report)
    assert validation.report.verdict is Verdict.MODIFIED
    assert sig.covers_whole_document is False
    assert validation.signed_content() == ()
    assert "Kẻ Gian".encode() not in validation.signed_parts[0][0].data


async def test_signature_wrapping_with_a_duplicated_id_is_refused(pki, store):
    data = FORM.replace(b"<ToKhai ", b"<ToKhai Id='tk' ")
    signed = sign(pki.good, data)

    def duplicate(root):
        forged = etree.SubElement(root, "{urn:dvc:tokhai}ToKhai", Id="tk")
        etree.SubElement(forged, "{urn:dvc:tokhai}HoTen").text = "Kẻ Gian"

    report = await validate_xml(edit(signed, duplicate), store)
    assert outcome(report) == FORMAT_FAILURE


async def test_forged_part_covered_by_an_untrusted_signature_is_not_valid(pki, store):
    data = "<HoSo xmlns='urn:dvc:tokhai'><ToKhai Id='tk'><HoTen>Nguyễn Văn A</HoTen></ToKhai></HoSo>".encode()
    signed = sign(pki.good, data, reference_uri="#tk")

    def add_note(root):
        etree.SubElement(root, "{urn:dvc:tokhai}GhiChu", Id="note").text = "Miễn lệ phí"

    attacked = sign(pki.foreign, edit(signed, add_note), reference_uri="#note")
    report = await validate_xml(attacked, store)
    assert [s.verdict for s in report.signatures] == [Verdict.VALID, Verdict.UNTRUSTED]
    assert report.verdict is Verdict.UNTRUSTED


# --- hostile XML ---------------------------------------------------------------------------------------------------

INTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ToKhai [<!ENTITY ten "Nguyen Van A">]>
<ToKhai><HoTen>&ten;</HoTen></ToKhai>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ToKhai [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ToKhai><HoTen>&xxe;</HoTen></ToKhai>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ToKhai SYSTEM "http://attacker.example/evil.dtd">
<ToKhai/>"""


@pytest.mark.parametrize(
    "data",
    [
        INTERNAL_ENTITY,
        EXTERNAL_ENTITY,
        BILLION_LAUGHS,
        EXTERNAL_DTD,
        EXTERNAL_ENTITY.decode().replace('"1.0"', '"1.0" encoding="UTF-16"').encode("utf-16"),
    ],
    ids=["internal-entity", "external-entity", "billion-laughs", "external-dtd", "utf16-external-entity"],
)
async def test_dtds_and_entities_are_refused(store, data):
    report = await validate_xml(data, store)
    assert outcome(report) == FORMAT_FAILURE
    assert report.originals_check_required is True
    assert "root:" not in str(report.to_json())  # nothing from /etc/passwd leaks into the report
    with pytest.raises(UnsafeXMLError):
        parse_xml(data)


async def test_signed_form_with_a_doctype_prepended_is_refused(pki, store):
    signed = sign(pki.good).split(b"?>", 1)[1]
    attacked = b'<?xml version="1.0"?><!DOCTYPE ToKhai [<!ENTITY x "y">]>' + signed
    assert outcome(await validate_xml(attacked, store)) == FORMAT_FAILURE


# --- trust ---------------------------------------------------------------------------------------------------------


async def test_revoked_signer(pki, store):
    report = await validate_xml(sign(pki.revoked), store)
    sig = only(report)
    assert report.verdict is Verdict.REVOKED
    assert sig.indication is Indication.INDETERMINATE
    assert sig.sub_indication in {SubIndication.REVOKED_NO_POE, SubIndication.REVOKED}
    assert sig.revocation is Revocation.REVOKED


async def test_expired_signer(pki, store):
    report = await validate_xml(sign(pki.expired), store)
    assert outcome(report) == (Verdict.EXPIRED, Indication.INDETERMINATE, SubIndication.OUT_OF_BOUNDS_NO_POE)


async def test_foreign_root_is_untrusted(pki, store):
    report = await validate_xml(sign(pki.foreign), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_CERTIFICATE_CHAIN_FOUND)


async def test_signxml_trust_store_is_never_consulted(pki, store, monkeypatch):
    """signxml would trust the certifi bundle: its chain verifier must never run, and it always gets the cert."""

    def refuse(*args, **kwargs):
        raise AssertionError("signxml's own certificate chain validation was used")

    seen: list[dict] = []
    original_verify = XMLVerifier.verify

    def spy(self, data, **kwargs):
        seen.append(kwargs)
        return original_verify(self, data, **kwargs)

    monkeypatch.setattr(XMLVerifier, "get_cert_chain_verifier", refuse)
    monkeypatch.setattr(signxml.util.X509CertChainVerifier, "verify", refuse)
    monkeypatch.setattr(XMLVerifier, "verify", spy)

    assert outcome(await validate_xml(sign(pki.good), store)) == VALID
    assert outcome(await validate_xml(sign(pki.good, signer=XAdESSigner()), store)) == VALID
    foreign = await validate_xml(sign(pki.foreign), store)
    assert foreign.verdict is Verdict.UNTRUSTED
    assert seen and all(kwargs.get("x509_cert") is not None for kwargs in seen)
    assert all(kwargs.get("ca_pem_file") is None and kwargs.get("cert_resolver") is None for kwargs in seen)


async def test_unknown_revocation_status_is_untrusted(pki):
    bare = TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()])
    report = await validate_xml(sign(pki.good), bare)
    sig = only(report)
    assert outcome(report) == REVOCATION_UNKNOWN
    assert sig.revocation is Revocation.UNKNOWN


async def test_ca_without_revocation_service_is_untrusted(pki, store):
    report = await validate_xml(sign(pki.no_revinfo), store)
    sig = only(report)
    assert outcome(report) == REVOCATION_UNKNOWN
    assert sig.revocation is Revocation.UNKNOWN


async def test_signer_without_signing_key_usage(pki, store):
    report = await validate_xml(sign(pki.no_signing_usage), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.CHAIN_CONSTRAINTS_FAILURE)


# --- algorithm policy ----------------------------------------------------------------------------------------------


async def test_rsa_1024_signer_is_refused(pki, store):
    assert outcome(await validate_xml(sign(pki.weak_rsa), store)) == WEAK_CRYPTO


async def test_small_ec_key_is_refused(pki, store):
    signed = sign(pki.weak_ec, signer=XMLSigner(signature_algorithm="ecdsa-sha256"))
    assert outcome(await validate_xml(signed, store)) == WEAK_CRYPTO


@pytest.mark.parametrize(
    ("signature_algorithm", "digest_algorithm"),
    [("rsa-sha1", "sha1"), ("rsa-sha256", "sha1"), ("rsa-sha1", "sha256")],
)
async def test_sha1_is_refused_by_the_national_minimum(pki, store, signature_algorithm, digest_algorithm):
    signer = LegacySigner(signature_algorithm=signature_algorithm, digest_algorithm=digest_algorithm)
    report = await validate_xml(sign(pki.good, signer=signer), store)
    assert outcome(report) == WEAK_CRYPTO
    assert only(report).signer.common_name == "Nguyễn Văn A"


async def test_md5_digest_is_refused(pki, store):
    signed = sign(pki.good).replace(
        b"http://www.w3.org/2001/04/xmlenc#sha256", b"http://www.w3.org/2001/04/xmldsig-more#md5"
    )
    assert outcome(await validate_xml(signed, store)) == WEAK_CRYPTO


# --- XAdES specifics -----------------------------------------------------------------------------------------------


async def test_xades_signing_certificate_of_another_holder_is_refused(pki, store):
    class WrongCertSigner(XAdESSigner):
        def add_signing_certificate(self, signed_signature_properties, sig_root, signing_settings):
            other = dataclasses.replace(signing_settings, cert_chain=_cert_pems(pki.good_ec))
            super().add_signing_certificate(signed_signature_properties, sig_root, other)

    report = await validate_xml(sign(pki.good, signer=WrongCertSigner()), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND)


async def test_xades_with_unsigned_signed_properties_is_not_valid(pki, store):
    class NoPropertiesReference(XAdESSigner):
        def _add_reference_to_signed_info(self, sig_root, node_to_reference, **attrs):
            if attrs.get("Type") != "http://uri.etsi.org/01903#SignedProperties":
                super()._add_reference_to_signed_info(sig_root, node_to_reference, **attrs)

    report = await validate_xml(sign(pki.good, signer=NoPropertiesReference()), store)
    assert report.format is Format.XADES
    assert outcome(report) == FORMAT_FAILURE


# --- no signature, no certificate, broken input --------------------------------------------------------------------


async def test_unsigned_form(store):
    report = await validate_xml(FORM, store, file="tokhai.xml")
    assert report.verdict is Verdict.UNSIGNED
    assert report.signed is False
    assert report.to_json()["format"] == "none"
    assert report.originals_check_required is True


async def test_signature_without_a_certificate_is_not_valid(pki, store):
    def strip(root):
        key_info = root.find(".//ds:KeyInfo", NS)
        key_info.getparent().remove(key_info)

    report = await validate_xml(edit(sign(pki.good), strip), store)
    assert outcome(report) == (Verdict.UNTRUSTED, Indication.INDETERMINATE, SubIndication.NO_SIGNING_CERTIFICATE_FOUND)


async def test_garbled_certificate_is_a_format_failure(pki, store):
    def garble(root):
        root.find(".//ds:X509Certificate", NS).text = "bm90IGEgY2VydGlmaWNhdGU="

    assert outcome(await validate_xml(edit(sign(pki.good), garble), store)) == FORMAT_FAILURE


@pytest.mark.parametrize(
    "data",
    [b"", b"<", b"<ToKhai>", b"<ToKhai><HoTen>A</ToKhai>", b"GIF89a", b"\x00\xff" * 10, "<ToKhai>Nguyễn".encode()],
)
async def test_malformed_xml_is_a_format_failure(store, data):
    assert outcome(await validate_xml(data, store)) == FORMAT_FAILURE
    with pytest.raises(XMLRefusedError):
        parse_xml(data)


async def test_truncated_signed_forms_never_pass(pki, store):
    signed = sign(pki.good, signer=XAdESSigner())
    for cut in range(1, len(signed), max(1, len(signed) // 40)):
        report = await validate_xml(signed[:cut], store)
        assert report.verdict is not Verdict.VALID
        assert report.signed  # a broken document is reported, never as unsigned


async def test_random_mutations_never_pass_and_never_raise(pki, store):
    original = sign(pki.good)
    expected = (await validate_xml_content(original, store)).signed_content()
    rng = random.Random(20261123)
    for _ in range(80):
        mutated = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        if bytes(mutated) == original:
            continue
        validation = await validate_xml_content(bytes(mutated), store)
        if validation.report.verdict is Verdict.VALID:
            # Only a change outside what is signed (whitespace inside KeyInfo, say) may leave it valid: the signed
            # content must be exactly the original's.
            assert validation.signed_content() == expected


async def test_internal_errors_become_format_failures(pki, store, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(xml_module, "_validate_certificate", explode)
    assert outcome(await validate_xml(sign(pki.good), store)) == FORMAT_FAILURE
    monkeypatch.setattr(xml_module, "parse_xml", explode)
    assert outcome(await validate_xml(sign(pki.good), store)) == FORMAT_FAILURE


async def test_verify_document_routes_xml_here(pki, store):
    report = await verify_document(sign(pki.good, signer=XAdESSigner()), store, filename="tokhai.xml")
    assert report.format is Format.XADES
    assert report.verdict is Verdict.VALID


# --- one store for many documents -----------------------------------------------------------------------------------


def test_a_path_found_for_one_form_does_not_lend_its_intermediates_to_another(pki):
    # The store knows no intermediate: a form carrying its issuing CA is valid, the same signer's form without it is
    # not, in either order (a path remembered for the first form never serves the second).
    bare = TrustStore(anchors=[pki.root.asn1_cert()], crls=load_crls(pki.crl_paths))
    leaf_only = etree.tostring(
        XMLSigner().sign(etree.fromstring(FORM), key=_key_pem(pki.good), cert=_cert_pems(pki.good)[:1]),
        xml_declaration=True,
        encoding="UTF-8",
    )
    with_chain = sign(pki.good)
    for data, expected in ((with_chain, Verdict.VALID), (leaf_only, Verdict.UNTRUSTED), (with_chain, Verdict.VALID)):
        report = asyncio.run(validate_xml(data, bare))
        assert report.verdict is expected, report.to_json()


def test_a_remembered_path_serves_only_within_its_time_to_live(pki):
    store = TrustStore(
        anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], crls=load_crls(pki.crl_paths)
    )
    key = ("signer",)
    now = datetime.now(UTC)
    store.path_cache.put(key, now, "path")
    assert store.path_cache.get(key, now + timedelta(seconds=30)) == "path"
    assert store.path_cache.get(key, now + store.path_cache.ttl + timedelta(seconds=1)) is None
    assert store.path_cache.get(key, now) is None  # an expired entry is dropped
