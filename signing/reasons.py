"""Why something failed, in one line a clerk can read: the one place exceptions become a report's warnings.

Validators catch what a malformed file makes a parser raise and report it. The raw text of such an exception is
written for a programmer: asn1crypto appends a chain of "while parsing …" lines, pyHanko raises ``KeyError`` with an
object reference or lets a ``seek`` fail on a bad offset. :func:`explain` turns the common ones into a sentence and
every other exception into ``Type: message`` on one line; :func:`one_line` makes any text a single line (every
warning passes through it, :class:`signing.report.SignatureResult`). Standard library only.
"""

from __future__ import annotations

import re
from types import TracebackType

__all__ = ["explain", "one_line"]

#: What asn1crypto was parsing, by module, when its data turned out malformed (the outermost structure named).
_ASN1_WHAT = {
    "cms": "the CMS structure is malformed",
    "tsp": "a timestamp token is malformed",
    "x509": "a certificate is malformed",
    "ocsp": "an OCSP response is malformed",
    "crl": "a CRL is malformed",
    "keys": "a key is malformed",
}
_ASN1_MODULE = re.compile(r"\basn1crypto\.(\w+)\.")
_NEGATIVE_SEEK = re.compile(r"negative seek value -?\d+")
_UNKNOWN_HASH = re.compile(r"module '[\w.]*hashes' has no attribute '([^']+)'")


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line: asn1crypto's "while parsing …" continuation lines dropped, other line breaks and runs of
    white space made single spaces; cut at ``limit`` characters (with an ellipsis) when given."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("while parsing ")]
    flat = " ".join(" ".join(lines).split())
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat


def explain(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one readable line: a sentence for the parser failures malformed files commonly cause, else
    ``Type: message`` (``MemoryError`` keeps its name: the sandbox recognises it)."""
    message = str(exc)
    first = one_line(message.splitlines()[0] if message.strip() else "", limit)
    if isinstance(exc, MemoryError):
        return "MemoryError"
    if isinstance(exc, KeyError) and exc.args and type(exc.args[0]).__name__ == "Reference":
        idnum = getattr(exc.args[0], "idnum", None)
        where = f" (object {idnum})" if idnum is not None else ""
        return f"the PDF refers to an object it does not contain{where}"
    if isinstance(exc, ValueError) and _NEGATIVE_SEEK.fullmatch(message.strip()):
        return "its cross-reference data (startxref or /Prev) does not point to a cross-reference section"
    if isinstance(exc, AttributeError) and (unknown := _UNKNOWN_HASH.search(message)):
        return f"unsupported digest algorithm {unknown.group(1)}"
    if _from_asn1crypto(exc, message):
        modules = [module for module in _ASN1_MODULE.findall(message) if module in _ASN1_WHAT]
        what = _ASN1_WHAT[modules[-1]] if modules else "the ASN.1 (DER) data is malformed"
        return f"{what} ({first})" if first else what
    if type(exc).__module__ == "zlib":
        return f"a compressed stream is damaged ({first})" if first else "a compressed stream is damaged"
    name = type(exc).__name__
    return f"{name}: {one_line(message, limit)}" if message.strip() else name


def _from_asn1crypto(exc: BaseException, message: str) -> bool:
    """Whether ``exc`` is asn1crypto's complaint about malformed data: raised in its code, or naming its types."""
    if not isinstance(exc, ValueError | TypeError | OverflowError):
        return False
    if "while parsing asn1crypto." in message or "Error parsing asn1crypto." in message:
        return True
    module = _raised_in(exc.__traceback__)
    return module is not None and module.startswith("asn1crypto.")


def _raised_in(tb: TracebackType | None) -> str | None:
    """The module of the innermost frame of ``tb`` (where the exception was raised), or ``None``."""
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_globals.get("__name__")
    return name if isinstance(name, str) else None
