"""PAdES: document timestamps added after the last signature, as long-term validation tools write them.

pyHanko's own timestamper adds a bare invisible field; other tools (the PAdES-LTA extension of EU DSS, PDFBox) also
give the invisible field an empty appearance stream and the form standard default fonts (``/AcroForm /DR``), which
pyHanko's default difference policy rates as form filling. Such an update is validation data; anything else that
comes with it is still a change no signature covers.
"""

from __future__ import annotations

from io import BytesIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel

from signing.pdf import validate_pdf
from signing.report import Verdict
from tests.reports import VALID, only, outcome
from tests.signing_pdf_support import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.signing_pdf_support import MODIFIED_LATER, name, sign, text_field, timestamper, update

STAMP = "DocTs"


def _font(base: str, **extra: generic.PdfObject) -> generic.DictionaryObject:
    entries = {name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"), name("/BaseFont"): name(base)}
    entries.update({name(k): v for k, v in extra.items()})
    return generic.DictionaryObject(entries)


def _standard_fonts(writer: IncrementalPdfFileWriter) -> dict[str, generic.PdfObject]:
    return {
        "/Helv": writer.add_object(_font("/Helvetica", **{"/Encoding": name("/WinAnsiEncoding")})),
        "/ZaDb": writer.add_object(_font("/ZapfDingbats")),
    }


async def _stamp(pki, signed: bytes, *, fonts=_standard_fonts, box=None, also=None) -> bytes:
    """``signed`` with a document timestamp in a new field carrying an empty appearance stream, the form's default
    resources gaining ``fonts(writer)``, and ``also(writer)`` in the same revision."""
    writer = IncrementalPdfFileWriter(BytesIO(signed), strict=False)
    acroform = writer.root["/AcroForm"]
    resources = generic.DictionaryObject({name("/Font"): generic.DictionaryObject(fonts(writer))})
    acroform[name("/DR")] = writer.add_object(resources)
    acroform[name("/DA")] = generic.TextStringObject("/Helv 0 Tf 0 g ")
    writer.update_container(acroform)
    fields.append_signature_field(writer, fields.SigFieldSpec(STAMP, box=box))
    [field] = [f.get_object() for f in writer.root["/AcroForm"]["/Fields"] if f.get_object().get("/T") == STAMP]
    appearance = generic.StreamObject(
        {
            name("/Type"): name("/XObject"),
            name("/Subtype"): name("/Form"),
            name("/BBox"): generic.ArrayObject([generic.NumberObject(0)] * 4),
        },
        stream_data=b"",
    )
    field[name("/AP")] = generic.DictionaryObject({name("/N"): writer.add_object(appearance)})
    if also is not None:
        also(writer)
    out = await signers.PdfTimeStamper(timestamper(pki), field_name=STAMP).async_timestamp_pdf(writer, "sha256")
    return out.getvalue()


def _pyhanko_default_level(data: bytes) -> ModificationLevel:
    reader = PdfFileReader(BytesIO(data), strict=False)
    result = DEFAULT_DIFF_POLICY.review_file(reader, reader.embedded_regular_signatures[-1].signed_revision)
    level = getattr(result, "modification_level", None)
    assert isinstance(level, ModificationLevel), result
    return level


async def test_document_timestamp_with_appearance_and_default_fonts_is_validation_data(pki, store, signed):
    stamped = await _stamp(pki, signed)
    assert _pyhanko_default_level(stamped) is ModificationLevel.FORM_FILLING  # the case in point
    report = await validate_pdf(stamped, store)
    sig = only(report)  # the document timestamp is not a signature by a person
    assert outcome(report) == VALID, report.to_json()
    assert sig.covers_whole_document and not sig.modified_after_signing
    assert sig.warnings == ()


async def test_form_field_filled_with_the_document_timestamp_is_modified(pki, store, signed):
    def fill(writer):
        field = text_field(writer)
        field[name("/V")] = generic.TextStringObject("9999999")
        writer.update_container(field)

    report = await validate_pdf(await _stamp(pki, signed, also=fill), store)
    sig = only(report)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert sig.modified_after_signing
    assert any("'HoTen'" in warning and "after the last signature" in warning for warning in sig.warnings)


async def test_an_embedded_font_in_the_default_resources_is_modified(pki, store, signed):
    """A font program the timestamp update brings could change how existing fields are drawn."""

    def embedded(writer):
        program = writer.add_object(generic.StreamObject(stream_data=b"\x00\x01\x00\x00"))
        descriptor = writer.add_object(
            generic.DictionaryObject({name("/Type"): name("/FontDescriptor"), name("/FontFile2"): program})
        )
        return {"/Helv": writer.add_object(_font("/Helvetica", **{"/FontDescriptor": descriptor}))}

    report = await validate_pdf(await _stamp(pki, signed, fonts=embedded), store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()


async def test_a_default_font_the_signed_revision_had_replaced_is_modified(pki, store, document):
    """The signer's form already names /Helv; the timestamp update binds the name to another font."""

    def helvetica(writer):
        acroform = writer.root["/AcroForm"]
        fonts = generic.DictionaryObject({name("/Helv"): writer.add_object(_font("/Helvetica"))})
        acroform[name("/DR")] = writer.add_object(generic.DictionaryObject({name("/Font"): fonts}))
        writer.update_container(acroform)

    signed = await sign(update(document, helvetica), pki.good)

    def courier(writer):
        return {"/Helv": writer.add_object(_font("/Courier"))}

    report = await validate_pdf(await _stamp(pki, signed, fonts=courier), store)
    assert outcome(report) == MODIFIED_LATER, report.to_json()

    def kept(writer):  # the same binding, one more standard font: validation data still
        before = writer.root["/AcroForm"]["/DR"]["/Font"]
        return {"/Helv": before.raw_get("/Helv"), "/ZaDb": writer.add_object(_font("/ZapfDingbats"))}

    report = await validate_pdf(await _stamp(pki, signed, fonts=kept), store)
    assert outcome(report) == VALID, report.to_json()


async def test_a_visible_document_timestamp_is_modified(pki, store, signed):
    """Its appearance would be drawn on the page, and nobody vouches for it."""
    report = await validate_pdf(await _stamp(pki, signed, box=(20, 20, 220, 120)), store)
    sig = only(report)
    assert outcome(report) == MODIFIED_LATER, report.to_json()
    assert report.verdict is Verdict.MODIFIED and sig.modified_after_signing
