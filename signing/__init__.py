"""Digital signature verification for dossiers: PAdES, XML-DSig/XAdES and CMS/CAdES.

Importable on its own by a portal backend; the names below load their modules on first use, so importing the report
types, the settings or the content sniffer does not load pyHanko::

    from signing import TrustSettings, TrustStore, verify_document_sync

    store = TrustStore.load(TrustSettings(trust_anchors=["trust/root.pem"], crls=["trust/ca.crl"]))
    report = verify_document_sync(pdf_bytes, store, filename="don.pdf")
    report.verdict, report.originals_check_required, report.to_json()
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import (
        Format,
        Indication,
        ReportFormatError,
        Revocation,
        SignatureReport,
        SignatureResult,
        Signer,
        SubIndication,
        Verdict,
    )
    from .settings import TrustSettings
    from .sniff import detect_format, sniff_content_type
    from .trust import TrustMaterialError, TrustStore
    from .verify import Document, Verifier, verify_document, verify_document_sync

#: Each public name and the module that defines it.
_HOME = {
    "Format": "report",
    "Indication": "report",
    "ReportFormatError": "report",
    "Revocation": "report",
    "SignatureReport": "report",
    "SignatureResult": "report",
    "Signer": "report",
    "SubIndication": "report",
    "Verdict": "report",
    "TrustSettings": "settings",
    "detect_format": "sniff",
    "sniff_content_type": "sniff",
    "TrustMaterialError": "trust",
    "TrustStore": "trust",
    "Document": "verify",
    "Verifier": "verify",
    "verify_document": "verify",
    "verify_document_sync": "verify",
}

__all__ = [
    "Document",
    "Format",
    "Indication",
    "ReportFormatError",
    "Revocation",
    "SignatureReport",
    "SignatureResult",
    "Signer",
    "SubIndication",
    "TrustMaterialError",
    "TrustSettings",
    "TrustStore",
    "Verdict",
    "Verifier",
    "detect_format",
    "sniff_content_type",
    "verify_document",
    "verify_document_sync",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
