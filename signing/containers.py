"""Signed ZIP containers the gateway recognises but does not validate: ASiC (ETSI EN 319 162: ``.asice``,
``.asics``, ``.sce``, ``.scs``, ``.bdoc``, ``.edoc``) and signed OpenDocument files.

Such a file carries signatures, so it is never reported ``unsigned``: it is an unsupported construct,
``INDETERMINATE``/``FORMAT_FAILURE`` (``invalid``) with a warning saying what was found. Only the archive's central
directory (the names of its entries) is read: nothing is decompressed or extracted, so the size of the entries (a zip
bomb) does not matter.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from .report import Format

__all__ = ["SignedContainer", "signed_container"]

#: Where ASiC and OpenDocument keep their signatures.
_META_INF = "META-INF/"
#: OpenDocument's signature files (ODF 1.2 part 3, §5): the document's and the macros'.
_ODF_SIGNATURES = frozenset({"documentsignatures.xml", "macrosignatures.xml"})


@dataclass(frozen=True)
class SignedContainer:
    """A signed container: its kind, the format of the signature found and the entry that holds it."""

    kind: str
    format: Format
    entry: str

    def reason(self) -> str:
        if self.kind == "ODF":
            return (
                f"signed OpenDocument files are not supported: the signature in {self.entry} was not verified; "
                "verify it in the office application, or submit the document signed as PDF"
            )
        return (
            f"ASiC containers are not supported: the signature in {self.entry} was not verified; verify the "
            "container with an ASiC validator, or submit the signed document itself (PDF, XML or a CMS signature)"
        )


def signed_container(data: bytes) -> SignedContainer | None:
    """The signature a ZIP container carries in ``META-INF/`` (ASiC or OpenDocument), or ``None``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()  # the central directory only: no entry is read
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        return None
    found: SignedContainer | None = None
    for name in names:
        if not name.startswith(_META_INF) or name.endswith("/"):
            continue
        base = name[len(_META_INF) :].lower()
        if base in _ODF_SIGNATURES:
            return SignedContainer("ODF", Format.XADES, name)
        if found is None and "signature" in base and base.endswith(".xml"):
            found = SignedContainer("ASiC", Format.XADES, name)
        elif found is None and base.endswith(".p7s"):
            found = SignedContainer("ASiC", Format.CADES, name)
    return found
