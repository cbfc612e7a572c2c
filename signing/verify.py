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
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .limits import DEFAULT_BUDGET, DEFAULT_LIMITS, Budget, Limits
from .reasons import explain
from .report import Format, SignatureReport, failed_report
from .sandbox import SandboxPool
from .sniff import signature_format, validator_for
from .trust import TrustSettings, TrustStore

logger = logging.getLogger(__name__)

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
        fmt = _format_of(data, filename, detached_signature)
        return failed_report(filename, fmt, f"validator error: {explain(exc)}")


def _format_of(data: bytes, filename: str, detached_signature: bytes | None) -> Format:
    """The format the document's validator would have reported (``none`` if even that cannot be told)."""
    try:
        return signature_format(data, filename, detached_signature)
    except Exception:  # noqa: BLE001 - only a label for a report that says the validation failed
        return Format.NONE


async def _verify(
    data: bytes, store: TrustStore, *, filename: str, detached_signature: bytes | None
) -> SignatureReport:
    limits = store.limits
    if len(data) > limits.max_document_bytes:
        return failed_report(filename, Format.NONE, _too_large("document", limits.max_document_bytes))
    if detached_signature is not None:
        if len(detached_signature) > limits.max_cms_signature_bytes:
            reason = _too_large("detached signature", limits.max_cms_signature_bytes)
            return failed_report(filename, Format.CADES, reason)
        from .cms import validate_cms

        return await validate_cms(detached_signature, store, content=data, file=filename)
    kind, container = validator_for(data, filename)
    if container is not None:  # signed, but not a format this validator reads: never `unsigned`
        return failed_report(filename, container.format, container.reason())
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


def _too_large(what: str, limit: int) -> str:
    return f"{what} too large to verify (over the limit of {limit / (1024 * 1024):g} MiB)"


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
    #: Why the document was refused before it was read (over the size limit); its report says so.
    refused: str | None = None

    @classmethod
    def from_path(cls, path: Path, detached: Path | None = None, limits: Limits = DEFAULT_LIMITS) -> Document:
        """The document at ``path``: its size is checked before it is read, and no more than the limit is read."""
        detached = detached or find_detached_signature(path)
        data = read_bounded(path, limits.max_document_bytes)
        signature = read_bounded(detached, limits.max_cms_signature_bytes) if detached else None
        if data is None:
            return cls(b"", path.name, refused=_too_large("document", limits.max_document_bytes))
        if detached is not None and signature is None:
            return cls(b"", path.name, refused=_too_large("detached signature", limits.max_cms_signature_bytes))
        return cls(data=data, filename=path.name, detached_signature=signature)


def read_bounded(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path``, or ``None`` when it holds more than ``limit`` bytes (stat first, then a bounded read,
    so a file that grows meanwhile is still not read past the limit)."""
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            return None
        data = handle.read(limit + 1)
    return data if len(data) <= limit else None


def verify_one(doc: Document, store: TrustStore) -> SignatureReport:
    """The report for ``doc`` in this process (no budget): what a worker runs."""
    if doc.refused is not None:
        return failed_report(doc.filename, Format.NONE, doc.refused)
    return verify_document_sync(doc.data, store, filename=doc.filename, detached_signature=doc.detached_signature)


# --- parallel verification ------------------------------------------------------------------------------------------

_process_store: TrustStore | None = None


def _init_process(settings: TrustSettings) -> None:
    global _process_store
    _process_store = TrustStore.load(settings)


def _verify_in_process(doc: Document) -> SignatureReport:
    assert _process_store is not None
    return verify_one(doc, _process_store)


class Verifier:
    """Verifies many documents with one parsed trust store, off the event loop, each within a budget.

    ``await verifier.verify(doc)`` waits in a worker thread (its own event loop there), so an ASGI handler never
    blocks; ``verify_batch`` spreads a batch over ``workers`` and returns the reports in input order: the same
    :class:`SignatureReport` as ``verify``. With a ``budget`` (the default) every document is validated in a worker
    process with a memory cap and a CPU-time budget (:mod:`signing.sandbox`, workers started by ``start_method``: a
    fork server by default); with ``budget=None`` in this process, and a batch on a process pool loading
    ``settings``.
    """

    def __init__(
        self,
        store: TrustStore,
        *,
        settings: TrustSettings | None = None,
        threads: int | None = None,
        budget: Budget | None = DEFAULT_BUDGET,
        start_method: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.budget = budget
        self.start_method = start_method
        #: How many documents are validated at once (default: one per core); the workers stay up between calls.
        self.size = max(1, threads or os.cpu_count() or 1)
        self._threads: Executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="signing")
        self._sandbox = (
            SandboxPool(verify_one, store, budget, size=self.size, start_method=start_method)
            if budget is not None
            else None
        )

    @classmethod
    def from_settings(cls, settings: TrustSettings, *, threads: int | None = None) -> Verifier:
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
        workers = min(workers or os.cpu_count() or 1, len(docs))
        if workers <= 1 or (self.budget is None and self.settings is None):
            results = []
            for doc in docs:
                results.append(self._verify_here(doc))
                if on_done:
                    on_done()
            return results
        if self.budget is not None:
            # The verifier's own workers when there are enough of them: they stay up, warm, between batches.
            own = self._sandbox is not None and workers <= self.size
            sandbox = self._sandbox if own and self._sandbox is not None else self._new_sandbox(self.budget, workers)
            try:
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="signing-batch") as pool:
                    return _collect([pool.submit(sandbox.run, doc) for doc in docs], on_done)
            finally:
                if not own:
                    sandbox.close()
        settings = self.settings
        assert settings is not None
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_process, initargs=(settings,)) as pool:
            return _collect([pool.submit(_verify_in_process, doc) for doc in docs], on_done)

    def _new_sandbox(self, budget: Budget, size: int) -> SandboxPool:
        return SandboxPool(verify_one, self.store, budget, size=size, start_method=self.start_method)

    def memory_limit(self) -> int | None:
        """The address-space cap (bytes) a document is validated under, or ``None`` without one."""
        return self._sandbox.memory_limit() if self._sandbox is not None else None

    def _verify_here(self, doc: Document) -> SignatureReport:
        if self._sandbox is not None:
            return self._sandbox.run(doc)
        return verify_one(doc, self.store)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._sandbox is not None:
            self._sandbox.close()


def _collect(futures: list[Future[SignatureReport]], on_done: Callable[[], None] | None) -> list[SignatureReport]:
    for _ in as_completed(futures):
        if on_done:
            on_done()
    return [f.result() for f in futures]


def load_documents(
    paths: Iterable[Path], detached: Path | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[Document]:
    """The documents at ``paths``, each with its detached signature (``detached``, or the one found beside it)."""
    return [Document.from_path(p, detached, limits) for p in paths]
