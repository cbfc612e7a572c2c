"""Signed sample documents for tests, benchmarks and the bundled examples: PDF, XML forms and CMS."""

from __future__ import annotations

import asyncio
import os
from io import BytesIO

from lxml import etree
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import signers

from .pki import Identity


def make_pdf(text: str = "Don de nghi cap giay phep xay dung", *, padding: int = 0) -> bytes:
    """A one-page PDF with a line of text and, optionally, ``padding`` bytes of incompressible image-like data."""
    writer = PdfFileWriter()
    name = generic.NameObject
    font = writer.add_object(
        generic.DictionaryObject(
            {name("/Type"): name("/Font"), name("/Subtype"): name("/Type1"), name("/BaseFont"): name("/Helvetica")}
        )
    )
    content = generic.StreamObject(stream_data=f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
    resources = generic.DictionaryObject({name("/Font"): generic.DictionaryObject({name("/F1"): font})})
    if padding:
        blob = generic.StreamObject(stream_data=os.urandom(padding))
        resources[name("/XObject")] = generic.DictionaryObject({name("/Scan"): writer.add_object(blob)})
    page = generic.DictionaryObject(
        {
            name("/Type"): name("/Page"),
            name("/MediaBox"): generic.ArrayObject([generic.NumberObject(v) for v in (0, 0, 595, 842)]),
            name("/Contents"): writer.add_object(content),
            name("/Resources"): resources,
        }
    )
    writer.insert_page(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def sign_pdf(data: bytes, identity: Identity, *, field_name: str = "Sig1", **meta) -> bytes:
    """``data`` signed (incrementally) by ``identity`` with pyHanko; ``meta`` goes to PdfSignatureMetadata."""
    out = signers.sign_pdf(
        IncrementalPdfFileWriter(BytesIO(data), strict=False),
        signers.PdfSignatureMetadata(field_name=field_name, **meta),
        signer=identity.pyhanko_signer(),
    )
    return out.getvalue()


def make_form(rows: int = 3) -> bytes:
    """An XML application form (*tờ khai*) with Vietnamese content."""
    body = "".join(f"<Dong so='{i}'><HoTen>Nguyễn Văn {i}</HoTen><SoTien>150000</SoTien></Dong>" for i in range(rows))
    return f"<ToKhai xmlns='urn:dvc:tokhai'><MaTTHC>1.009794</MaTTHC>{body}</ToKhai>".encode()


def sign_xml(data: bytes, identity: Identity, **signer_options) -> bytes:
    """An enveloped XML-DSig signature over ``data`` with signxml."""
    from cryptography.hazmat.primitives import serialization
    from signxml import XMLSigner

    key = identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    certs = [identity.cert.public_bytes(serialization.Encoding.PEM).decode()]
    certs += [issuer.cert.public_bytes(serialization.Encoding.PEM).decode() for issuer in identity.chain]
    root = etree.fromstring(data)
    return etree.tostring(XMLSigner(**signer_options).sign(root, key=key, cert=certs), xml_declaration=True)


def sign_cms(data: bytes, identity: Identity, *, digest: str = "sha256", detached: bool = True, **options) -> bytes:
    """A CAdES signature (DER) over ``data``, detached by default."""
    info = asyncio.run(
        identity.pyhanko_signer().async_sign_general_data(data, digest, detached=detached, use_cades=True, **options)
    )
    return info.dump()
