"""XAdES counter-signatures: what one must sign.

A counter-signature (a ``ds:Signature`` inside ``xades:CounterSignature``, in its parent signature's unsigned
properties) signs its parent's ``ds:SignatureValue`` (ETSI EN 319 132-1 §5.2.7.2); a reference typed
``CountersignedSignature`` says so. A counter-signature that signs another element (injected beside the parent, or
the content itself) is not a counter-signature of anything, and a reference so typed in a signature that is no
counter-signature claims what it is not: :func:`counter_signature_problem` names either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lxml import etree

__all__ = ["COUNTERSIGNED_TYPE", "counter_signature_problem"]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
#: The ``Type`` of a reference to the counter-signed ``SignatureValue`` (XAdES 1.3.2 and later).
COUNTERSIGNED_TYPE = "http://uri.etsi.org/01903#CountersignedSignature"
_XADES_NAMESPACES = frozenset({"http://uri.etsi.org/01903/v1.3.2#", "http://uri.etsi.org/01903/v1.4.1#"})


def _is_counter_signature(signature: etree._Element) -> bool:
    holder = signature.getparent()
    if holder is None:
        return False
    name = etree.QName(holder)
    return name.localname == "CounterSignature" and name.namespace in _XADES_NAMESPACES


def counter_signature_problem(
    signature: etree._Element, references: Sequence[etree._Element], covered: Iterable[object]
) -> str | None:
    """Why ``signature`` is not the counter-signature it is placed or typed as (None when it is, or is none);
    ``covered`` is what each of its ``references`` resolved to, in order."""
    resolved = list(covered)
    typed = [target for reference, target in zip(references, resolved, strict=False) if _typed(reference)]
    if not _is_counter_signature(signature):
        if typed:
            return "a reference typed CountersignedSignature in a signature that counter-signs nothing"
        return None
    parent = next(signature.iterancestors(f"{{{DS_NS}}}Signature"), None)
    value = parent.find(f"{{{DS_NS}}}SignatureValue") if parent is not None else None
    if value is None:
        return "a counter-signature outside the signature it should counter-sign"
    if not any(target is value for target in resolved) or any(target is not value for target in typed):
        return "a counter-signature must sign its parent signature's SignatureValue; this one signs another element"
    return None


def _typed(reference: etree._Element) -> bool:
    return (reference.get("Type") or "").strip() == COUNTERSIGNED_TYPE
