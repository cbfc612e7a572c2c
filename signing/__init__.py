"""Digital signature verification for dossiers: PAdES, XML-DSig/XAdES and CMS/CAdES.

Importable on its own by a portal backend::

    from signing import TrustSettings, TrustStore, verify_document_sync

    store = TrustStore.load(TrustSettings(trust_anchors=["trust/root.pem"], crls=["trust/ca.crl"]))
    report = verify_document_sync(pdf_bytes, store, filename="don.pdf")
    report.verdict, report.originals_check_required, report.to_dict()
"""

from .report import (
    Format,
    Indication,
    Revocation,
    SignatureReport,
    SignatureResult,
    Signer,
    SubIndication,
    Verdict,
)
from .trust import TrustMaterialError, TrustSettings, TrustStore
from .verify import Document, Verifier, detect_format, verify_document, verify_document_sync

__all__ = [
    "Document",
    "Format",
    "Indication",
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
    "verify_document",
    "verify_document_sync",
]
