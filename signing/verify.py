"""One entry point for every format: detect, validate, never raise.

``verify_document`` is the validation boundary: whatever a malformed file makes a parser or validator do, the caller
gets a :class:`SignatureReport` (``FORMAT_FAILURE``, never ``valid``), not an exception. :class:`Verifier` keeps one
parsed :class:`TrustStore` for many documents and runs the CPU-heavy work off the event loop, on threads or, for
batches, on every core.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .report import Format, SignatureReport, failed_report
from .sniff import detect_format
from .trust import TrustSettings, TrustStore

logger = logging.getLogger(__name__)

#: Documents larger than this are refused before parsing (FORMAT_FAILURE).
MAX_DOCUMENT_BYTES = 200 * 1024 * 1024
DETACHED_SUFFIXES = (".p7s", ".sig")
CMS_SUFFIXES = (".p7s", ".p7m", ".p7b", ".sig")


async def verify_document(
    data: bytes,
    store: TrustStore,
    *,
    filename: str = "",
    detached_signature: bytes | None = None,
) -> SignatureReport:
    """The signature report for one document; ``detached_signature`` is a CMS signature over ``data``."""
    try:
        return await _verify(data, store, filename=filename, detached_signature=detached_signature)
    except Exception as exc:  # noqa: BLE001 - the validation boundary: an error is never `valid`
        logger.warning("signature validation failed with %s", type(exc).__name__)
        return failed_report(filename, Format.NONE, f"validator error: {type(exc).__name__}: {exc}")


async def _verify(
    data: bytes, store: TrustStore, *, filename: str, detached_signature: bytes | None
) -> SignatureReport:
    if len(data) > MAX_DOCUMENT_BYTES:
        return failed_report(filename, Format.NONE, "document too large to verify")
    if detached_signature is not None:
        from .cms import validate_cms

        return await validate_cms(detached_signature, store, content=data, file=filename)
    kind = detect_format(data, filename)
    if kind == "pdf":
        from .pdf import validate_pdf

        return await validate_pdf(data, store, file=filename)
    if kind == "xml":
        from .xml import validate_xml

        return await validate_xml(data, store, file=filename)
    if kind == "cms":
        from .cms import validate_cms

        return await validate_cms(data, store, file=filename)
    return SignatureReport(file=filename, format=Format.NONE)


def verify_document_sync(
    data: bytes,
    store: TrustStore,
    *,
    filename: str = "",
    detached_signature: bytes | None = None,
) -> SignatureReport:
    """Blocking form of :func:`verify_document`, for threads, processes and scripts."""
    return asyncio.run(verify_document(data, store, filename=filename, detached_signature=detached_signature))


def find_detached_signature(path: Path) -> Path | None:
    """A CMS signature stored beside ``path`` (``don.pdf.p7s`` or ``don.p7s``), if there is one."""
    if path.suffix.lower() in CMS_SUFFIXES:
        return None
    for suffix in DETACHED_SUFFIXES:
        for candidate in (path.with_name(path.name + suffix), path.with_suffix(suffix)):
            if candidate.is_file() and candidate != path:
                return candidate
    return None


@dataclass(frozen=True)
class Document:
    """One document to verify: its bytes, its name for the report, and a detached signature if any."""

    data: bytes
    filename: str = ""
    detached_signature: bytes | None = None

    @classmethod
    def from_path(cls, path: Path, detached: Path | None = None) -> Document:
        detached = detached or find_detached_signature(path)
        return cls(
            data=path.read_bytes(),
            filename=path.name,
            detached_signature=detached.read_bytes() if detached else None,
        )


# --- parallel verification ------------------------------------------------------------------------------------------

_process_store: TrustStore | None = None


def _init_process(settings: TrustSettings) -> None:
    global _process_store
    _process_store = TrustStore.load(settings)


def _verify_in_process(doc: Document) -> SignatureReport:
    assert _process_store is not None
    return verify_document_sync(
        doc.data, _process_store, filename=doc.filename, detached_signature=doc.detached_signature
    )


class Verifier:
    """Verifies many documents with one parsed trust store, off the event loop.

    ``await verifier.verify(doc)`` runs the validation in a worker thread (its own event loop there), so an ASGI
    handler never blocks. ``verify_batch`` spreads a batch over ``workers`` processes, each loading the trust
    material once, and returns the reports in input order: the same :class:`SignatureReport` as ``verify``.
    """

    def __init__(self, store: TrustStore, *, settings: TrustSettings | None = None, threads: int = 2) -> None:
        self.store = store
        self.settings = settings
        self._threads: Executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="signing")

    @classmethod
    def from_settings(cls, settings: TrustSettings, *, threads: int = 2) -> Verifier:
        return cls(TrustStore.load(settings), settings=settings, threads=threads)

    async def verify(self, doc: Document) -> SignatureReport:
        """The report for one document, validated in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._verify_here, doc)

    def verify_batch(
        self,
        docs: Sequence[Document],
        *,
        workers: int | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> list[SignatureReport]:
        """The reports for ``docs``, in input order; ``on_done`` is called once per finished document."""
        workers = workers or os.cpu_count() or 1
        if workers <= 1 or len(docs) <= 1 or self.settings is None:
            results = []
            for doc in docs:
                results.append(self._verify_here(doc))
                if on_done:
                    on_done()
            return results
        with ProcessPoolExecutor(
            max_workers=min(workers, len(docs)),
            initializer=_init_process,
            initargs=(self.settings,),
        ) as pool:
            futures = [pool.submit(_verify_in_process, doc) for doc in docs]
            for _ in as_completed(futures):
                if on_done:
                    on_done()
            return [f.result() for f in futures]

    def _verify_here(self, doc: Document) -> SignatureReport:
        return verify_document_sync(
            doc.data, self.store, filename=doc.filename, detached_signature=doc.detached_signature
        )

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)


def load_documents(paths: Iterable[Path], detached: Path | None = None) -> list[Document]:
    """The documents at ``paths``, each with its detached signature (``detached``, or the one found beside it)."""
    return [Document.from_path(p, detached) for p in paths]
