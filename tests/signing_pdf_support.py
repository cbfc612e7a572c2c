"""PDF documents, PAdES signing and fixtures of the PDF signature tests.

The fixtures (``__all__``) are star-imported by the test modules, pytest finds fixtures among a module's names; the
other names are imported by name.
"""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import datetime
from io import BytesIO

import pytest
from asn1crypto import keys
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.timestamps import DummyTimeStamper
from pyhanko_certvalidator import ValidationContext

from signing.report import Indication, SubIndication, Verdict
from signing.trust import TrustStore, load_crls

__all__ = ["document", "offline_without_crls", "signed", "store"]


name = generic.NameObject

HAS_FETCHERS = importlib.util.find_spec("signing.fetchers") is not None


# --- documents ------------------------------------------------------------------------------------------------------


def _stream(writer: PdfFileWriter, data: bytes, **entries: generic.PdfObject) -> generic.IndirectObject:
    stream = generic.StreamObject({name(k): v for k, v in entries.items()}, stream_data=data)
    return writer.add_object(stream)


def make_document() -> bytes:
    """A one-page application form: text drawn by the page, a form XObject with the applicant's statement, a
    fillable text field, and an unused stream (the kind of object a shadow attack hides in the signed revision)."""
    writer = PdfFileWriter()
    font = writer.add_object(
        generic.DictionaryObject(
            {name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"), name("/BaseFont"): name("/Helvetica")}
        )
    )
    fonts = generic.DictionaryObject({name("/F1"): font})
    bbox = generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 400, 40)])
    statement = _stream(
        writer,
        b"BT /F1 12 Tf 0 10 Td (Toi xin cam doan: so tien 150000 dong) Tj ET",
        **{
            "/Type": name("/XObject"),
            "/Subtype": name("/Form"),
            "/BBox": bbox,
            "/Resources": generic.DictionaryObject({name("/Font"): fonts}),
        },
    )
    content = _stream(
        writer, b"BT /F1 18 Tf 72 720 Td (Don de nghi cap giay phep xay dung) Tj ET q 1 0 0 1 72 600 cm /Stmt Do Q"
    )
    # Present in the signed revision but drawn by nothing: a later update could swap it in.
    _stream(
        writer,
        b"BT /F1 18 Tf 72 720 Td (Don de nghi cap giay phep xay dung) Tj ET BT /F1 40 Tf 72 500 Td (DA DUYET) Tj ET",
    )
    page = writer.add_object(
        generic.DictionaryObject(
            {
                name("/Type"): name("/Page"),
                name("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
                name("/Contents"): content,
                name("/Resources"): generic.DictionaryObject(
                    {name("/Font"): fonts, name("/XObject"): generic.DictionaryObject({name("/Stmt"): statement})}
                ),
            }
        )
    )
    field = writer.add_object(
        generic.DictionaryObject(
            {
                name("/FT"): name("/Tx"),
                name("/T"): generic.TextStringObject("HoTen"),
                name("/V"): generic.TextStringObject(""),
                name("/Type"): name("/Annot"),
                name("/Subtype"): name("/Widget"),
                name("/Rect"): generic.ArrayObject([generic.NumberObject(v) for v in (72, 500, 372, 520)]),
                name("/P"): page,
            }
        )
    )
    page.get_object()[name("/Annots")] = generic.ArrayObject([field])
    writer.insert_page(page.get_object())
    writer.root[name("/AcroForm")] = generic.DictionaryObject({name("/Fields"): generic.ArrayObject([field])})
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def sign(data: bytes, identity, *, field_name: str = "Sig1", timestamper=None, **meta) -> bytes:
    out = await signers.PdfSigner(
        signers.PdfSignatureMetadata(field_name=field_name, **meta),
        signer=identity.pyhanko_signer(),
        timestamper=timestamper,
    ).async_sign_pdf(IncrementalPdfFileWriter(BytesIO(data), strict=False))
    return out.getvalue()


def update(data: bytes, change) -> bytes:
    """An incremental update of ``data``: ``change(writer)`` edits, then the update is appended."""
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    change(writer)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def text_field(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    return writer.root["/AcroForm"]["/Fields"][0].get_object()


def page_of(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    return writer.root["/Pages"]["/Kids"][0].get_object()


def byte_range(data: bytes) -> tuple[int, int]:
    """The unsigned gap (the /Contents hex string) of the last signature in ``data``."""
    reader = PdfFileReader(BytesIO(data), strict=False)
    _, len1, start2, _ = reader.embedded_signatures[-1].byte_range
    return len1, start2


def _pkcs8(identity) -> keys.PrivateKeyInfo:
    der = identity.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return keys.PrivateKeyInfo.load(der)


def timestamper(pki, tsa=None, *, at: datetime | None = None) -> DummyTimeStamper:
    """An RFC 3161 time-stamping authority run in-process, with ``pki.tsa``'s key and certificate."""
    tsa = tsa or pki.tsa
    return DummyTimeStamper(
        tsa_cert=tsa.asn1_cert(), tsa_key=_pkcs8(tsa), certs_to_embed=[pki.ca.asn1_cert()], fixed_dt=at
    )


def validation_context(pki) -> ValidationContext:
    """What a signing application would use to embed revocation data: the test CRLs, nothing fetched."""
    return ValidationContext(
        trust_roots=[pki.root.asn1_cert()],
        other_certs=[pki.ca.asn1_cert()],
        crls=load_crls(pki.crl_paths),
        allow_fetching=False,
        revocation_mode="hard-fail",
    )


# --- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()], crls=load_crls(pki.crl_paths))


@pytest.fixture(scope="module")
def offline_without_crls(pki) -> TrustStore:
    return TrustStore(anchors=[pki.root.asn1_cert()], intermediates=[pki.ca.asn1_cert()])


@pytest.fixture(scope="module")
def document() -> bytes:
    return make_document()


@pytest.fixture(scope="module")
def signed(pki, document) -> bytes:
    return asyncio.run(sign(document, pki.good))


#: A disallowed change in a later revision: the signature fails format checking, as EU DSS reports it.
MODIFIED_LATER = (Verdict.MODIFIED, Indication.TOTAL_FAILED, SubIndication.FORMAT_FAILURE)
