"""Bounds on what an untrusted document may make the validators do, checked on the raw bytes before any parser runs.

* A document is refused above :data:`MAX_DOCUMENT_BYTES` (callers stat files first and read at most that much).
* A PDF signature's ``/Contents`` is a hex string that pyHanko's parser expands to many times its size in memory:
  any hex string longer than :data:`MAX_SIGNATURE_CONTENTS_HEX` is refused before the PDF is parsed.
* A detached CMS signature is refused above :data:`MAX_CMS_SIGNATURE_BYTES` before it is parsed.

:class:`Limits` carries these size caps and :class:`Budget` the memory and time a document may cost, so that both
can be configured (``[signing]``); the constants are their defaults.

The marker checks tell "there is a signature structure here" from "there is none", so that a signature that cannot be
processed is reported as broken (``invalid``), never as ``unsigned``. Standard library only.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BASE64_CMS",
    "DEFAULT_BUDGET",
    "DEFAULT_LIMITS",
    "MAX_CMS_SIGNATURE_BYTES",
    "MAX_DOCUMENT_BYTES",
    "MAX_SIGNATURE_CONTENTS_HEX",
    "Budget",
    "Limits",
    "carries_cms_signature",
    "carries_pdf_signature",
    "oversized_hex_string",
    "trailing_bytes_after_eof",
]

#: Documents larger than this are refused before they are read or parsed (FORMAT_FAILURE).
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024
#: The longest hex string (a signature's ``/Contents``) a PDF may carry: 2 MiB of CMS, room for a chain and its
#: revocation data (long-term material belongs in the Document Security Store, whose streams are read lazily).
MAX_SIGNATURE_CONTENTS_HEX = 4 * 1024 * 1024
#: The largest detached CMS signature (``.p7s``) parsed.
MAX_CMS_SIGNATURE_BYTES = 8 * 1024 * 1024

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The size caps checked before any parser runs (the module's constants are the defaults)."""

    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_signature_contents_hex: int = MAX_SIGNATURE_CONTENTS_HEX
    max_cms_signature_bytes: int = MAX_CMS_SIGNATURE_BYTES


DEFAULT_LIMITS = Limits()


class _Sized(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def detached_signature(self) -> bytes | None: ...


@dataclass(frozen=True)
class Budget:
    """What one document may cost: ``memory_bytes`` of address space over the validating worker's own, and
    ``base_seconds`` plus ``seconds_per_mib`` per MiB of input of the worker's CPU time (processing, so a verdict does
    not depend on how busy the machine is). A worker that does not answer within ``safety_factor`` times that budget
    of wall-clock time (one that waits without working) is stopped too; where a CPU-time limit is not available the
    budget is wall-clock time."""

    memory_bytes: int = 768 * MiB
    base_seconds: float = 30.0
    seconds_per_mib: float = 0.25
    safety_factor: float = 4.0

    def seconds_for(self, doc: _Sized) -> float:
        """The CPU time ``doc`` may take."""
        size = len(doc.data) + len(doc.detached_signature or b"")
        return self.base_seconds + self.seconds_per_mib * size / MiB

    def safety_seconds_for(self, doc: _Sized) -> float:
        """The wall-clock time after which a worker validating ``doc`` under a CPU-time limit is stopped anyway."""
        return self.seconds_for(doc) * self.safety_factor

    def memory_exceeded(self) -> str:
        return f"memory budget exceeded (limit {self.memory_bytes // MiB} MiB per document)"

    def time_exceeded(self, seconds: float, *, processing: bool = True, waited: float | None = None) -> str:
        """The reason for a document over its time budget of ``seconds``: of processing (CPU time), or of wall-clock
        time (``processing=False``); ``waited``: the safety stop's wall-clock time, when that is what ended it."""
        limit = math.ceil(seconds)
        if not processing:
            return f"time budget exceeded (limit {limit} s for this document)"
        if waited is not None:
            return (
                f"time budget exceeded (limit {limit} s of processing for this document; "
                f"no answer after {math.ceil(waited)} s)"
            )
        return f"time budget exceeded (limit {limit} s of processing for this document)"


DEFAULT_BUDGET = Budget()


@functools.lru_cache(maxsize=8)
def _long_hex(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]{%d}" % (limit + 1))


_PDF_SIGNATURE = re.compile(rb"/ByteRange\b|/Type\s*/(?:Sig|DocTimeStamp)(?![A-Za-z0-9])")
#: The DER encoding of the OID of CMS SignedData (1.2.840.113549.1.7.2).
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
#: A base64 CMS blob: a DER SEQUENCE with a long length ("MI…"), base64 characters and white space only.
BASE64_CMS = re.compile(rb"\s*MI[A-Za-z0-9+/]{2}[A-Za-z0-9+/=\s]*\Z")
_PDF_WHITESPACE = b"\x00\t\n\x0c\r "


#: Each byte mapped to ``1`` when it may appear inside a hex string (hex digits, PDF white space), else ``0``.
_HEX_STRING_BYTE = bytes(
    0x31 if chr(b) in "0123456789ABCDEFabcdef" or bytes([b]) in _PDF_WHITESPACE else 0x30 for b in range(256)
)
#: The distance between the bytes the pre-scan samples.
_SAMPLE_STEP = 4096


def oversized_hex_string(data: bytes, limit: int = MAX_SIGNATURE_CONTENTS_HEX) -> int | None:
    """The offset of a hex string longer than ``limit`` characters, or ``None``.

    A pre-scan reads one byte in every ``step``: a hex string of more than ``limit`` characters covers at least
    ``(limit + 1) // step`` consecutive sampled bytes, all of them hex digits or white space. Only where the samples
    show such a run is the exact pattern searched, from the sample before the run, so the answer is the exact
    search's (the first such string) while an ordinary document costs a few thousand byte reads, not a full scan.
    """
    if len(data) <= limit + 2:
        return None  # too short to hold one (no scan for the usual document)
    step = max(1, min(_SAMPLE_STEP, (limit + 1) // 8))
    needed = (limit + 1) // step
    run = data[::step].translate(_HEX_STRING_BYTE).find(b"1" * needed)
    if run < 0:
        return None
    match = _long_hex(limit).search(data, max(0, (run - 1) * step))
    return match.start() if match else None


def carries_pdf_signature(data: bytes) -> bool:
    """Whether ``data`` contains a PDF signature dictionary (``/ByteRange``, ``/Type /Sig`` or a timestamp)."""
    return _PDF_SIGNATURE.search(data) is not None


def carries_cms_signature(data: bytes, filename: str = "") -> bool:
    """Whether ``data`` looks like a CMS SignedData structure (its OID near the start, a base64 or PEM blob, or a
    ``.p7s``/``.p7m`` name), even if it cannot be parsed."""
    head = data[:256]
    if _SIGNED_DATA_OID in head or head.lstrip().startswith((b"-----BEGIN PKCS7", b"-----BEGIN CMS")):
        return True
    if BASE64_CMS.match(data[:4096]) and _base64_signed_data(data[:4096]):
        return True
    return filename.lower().endswith((".p7s", ".p7m", ".p7b"))


def _base64_signed_data(head: bytes) -> bool:
    import base64
    import binascii

    text = b"".join(head.split())
    text = text[: len(text) // 4 * 4]
    try:
        return _SIGNED_DATA_OID in base64.b64decode(text[:344])
    except (binascii.Error, ValueError):
        return False


def trailing_bytes_after_eof(data: bytes) -> int:
    """How many bytes other than white space follow the last ``%%EOF`` marker (0 when none, or no marker)."""
    end = data.rfind(b"%%EOF")
    if end < 0:
        return 0
    tail = data[end + 5 :]
    return len(tail) if tail.strip(_PDF_WHITESPACE) else 0
