"""Reports read by people: every warning one line, common parser failures said in words, and a report written
without its validator's answer (a validator error) in the format the document's bytes show."""

from __future__ import annotations

import re

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.generic import Reference
from pyhanko.sign.general import get_pyca_cryptography_hash

from signing.reasons import explain, one_line
from signing.report import Format, Indication, SignatureResult, failed_report
from signing.sniff import NotCMSError, parse_signed_data, signature_format
from signing.trust import TrustStore
from signing.verify import verify_document
from tests.reports import FORMAT_FAILURE, only, outcome
from tests.signing_pdf_support import make_document


@pytest.fixture(scope="module")
def store() -> TrustStore:
    return TrustStore(anchors=[])


def _signed_data_with_truncated_content() -> bytes:
    """CMS SignedData whose encapsulated content claims 101 bytes but holds 5 (asn1crypto fails when it reads it)."""
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data", "content": b"hello"},
            "signer_infos": [],
        }
    )
    der = cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    assert der.count(b"\x04\x05hello") == 1
    return der.replace(b"\x04\x05hello", b"\x04\x65hello")


async def test_a_validator_error_is_reported_in_the_documents_format_in_one_readable_line(store):
    report = await verify_document(_signed_data_with_truncated_content(), store, filename="x.p7m")
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert report.to_json()["format"] == "cades" and report.signed
    assert only(report).warnings == (
        "validator error: the CMS structure is malformed (Insufficient data - 101 bytes requested but only 5 "
        "available)",
    )


def test_a_structure_that_is_not_cms_is_said_in_one_line():
    not_cms = b"\x30\x06\x02\x01\x01\x30\x01\x00"  # a SEQUENCE starting with an INTEGER, as an evidence record does
    with pytest.raises(NotCMSError) as raised:
        parse_signed_data(not_cms)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("not a CMS signature: the CMS structure is malformed (Error parsing"), message


async def test_a_pdf_whose_cross_reference_offset_is_wrong_says_so(store):
    data = make_document()
    tail = data.rindex(b"startxref")
    broken = data[:tail] + re.sub(rb"startxref\s+\d+", b"startxref\n0", data[tail:])
    report = await verify_document(broken + b"\n/ByteRange [0 1 2 3]\n", store, filename="don.pdf")
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert report.format is Format.PADES
    assert only(report).warnings == (
        "not a readable PDF (its cross-reference data (startxref or /Prev) does not point to a cross-reference "
        "section)",
    )


def test_a_missing_pdf_object_is_said_in_words():
    assert explain(KeyError(Reference(21, 65535))) == "the PDF refers to an object it does not contain (object 21)"


def test_an_unsupported_digest_algorithm_is_named():
    try:
        get_pyca_cryptography_hash("1.2.840.113549.1.1.11")
    except Exception as exc:  # whatever pyHanko raises for it
        reason = explain(exc)
    else:  # pragma: no cover - a pyHanko that knows this name needs no explanation
        pytest.skip("pyHanko accepts this algorithm name")
    assert reason == "unsupported digest algorithm 1.2.840.113549.1.1.11"


def test_other_exceptions_keep_their_type_and_message_on_one_line():
    assert explain(RuntimeError("first\n  second")) == "RuntimeError: first second"
    assert explain(MemoryError()) == "MemoryError"  # the sandbox recognises a validator's MemoryError by its name


def test_every_warning_is_one_line():
    chained = "Error parsing x\n    while parsing asn1crypto.cms.ContentInfo"
    result = SignatureResult(indication=Indication.INDETERMINATE, warnings=(chained, "a\nb"))
    assert result.warnings == ("Error parsing x", "a b")
    assert failed_report("f", Format.CADES, chained).error == "Error parsing x"
    assert one_line("x" * 10, limit=5) == "xxxx…"


@pytest.mark.parametrize(
    ("data", "filename", "detached", "expected"),
    [
        (b"%PDF-1.7\n", "a.pdf", None, Format.PADES),
        (b"<r><ds:Signature xmlns:ds='http://www.w3.org/2000/09/xmldsig#'/></r>", "a.xml", None, Format.XMLDSIG),
        (b"<r xmlns:xades='http://uri.etsi.org/01903/v1.3.2#'/>", "a.xml", None, Format.XADES),
        (b"\x89PNG\r\n\x1a\n", "a.png", None, Format.NONE),
        (b"\x89PNG\r\n\x1a\n", "a.png", b"\x30\x00", Format.CADES),
        (b"%PXF-1.7 /ByteRange [0 1 2 3]", "a.bin", None, Format.PADES),
    ],
)
def test_the_signature_format_is_told_from_the_bytes(data, filename, detached, expected):
    assert signature_format(data, filename, detached) is expected


def test_a_cms_signature_is_cades():
    assert signature_format(_signed_data_with_truncated_content(), "x.p7m") is Format.CADES
