"""A memory and time budget for each document: validation in worker processes that may be killed.

Parsing an untrusted file is the one step whose cost the file decides. Each document is validated in a worker
process whose address space is capped (``RLIMIT_AS``: the worker's size when it starts plus
:attr:`Budget.memory_bytes`) and whose CPU time is capped (``RLIMIT_CPU``: before each document, its soft limit is
set to the CPU time used so far plus :meth:`Budget.seconds_for`, rounded up; the kernel then ends the worker with
``SIGXCPU``). The time budget is one of processing, not of waiting, so a verdict does not depend on how loaded the
machine is; the parent still stops a worker that has not answered after :meth:`Budget.safety_seconds_for` of
wall-clock time (one that waits without working). Where there is no CPU-time limit, the budget is wall-clock time. A
worker that runs out of memory answers ``invalid``/``FORMAT_FAILURE`` with that reason; one that goes over its time
budget, or dies, is killed and replaced, and the document gets the same verdict, in the format its bytes show. The
other documents of a batch are not affected.

Workers are long-lived (one per concurrent validation). By default they come from a fork server that has the
validators imported (``forkserver``; ``spawn`` where there is none), so they inherit nothing from a long-running,
many-threaded parent such as the daemon (its listening socket, its database connections, locks held by other
threads), and load the trust store from its DER material. A short-lived single-threaded caller (the ``verify``
command) may ask for ``fork``: workers then start in milliseconds with the store already parsed. A worker whose
parent has gone exits. The memory cap needs ``resource`` (POSIX); without it only the deadline applies.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from .asn1types import register_object_identifiers
from .limits import DEFAULT_BUDGET, Budget
from .report import Format, SignatureReport, failed_report
from .sniff import signature_format
from .trust import TrustStore

logger = logging.getLogger(__name__)


class Document(Protocol):
    """What a worker is given: the bytes, the name for the report, a detached signature."""

    @property
    def data(self) -> bytes: ...
    @property
    def filename(self) -> str: ...
    @property
    def detached_signature(self) -> bytes | None: ...


#: The validation a worker runs for one document.
Work = Callable[[Any, TrustStore], SignatureReport]


_STARTING = threading.Lock()
#: The signal the kernel sends a process past its CPU-time limit (``None`` where there is no such limit).
_SIGXCPU: int | None = getattr(signal, "SIGXCPU", None)


class _WorkerLost(Exception):
    """The worker missed its deadline or stopped; the message is the document's reason."""


def _address_space() -> int | None:
    """This process's virtual size in bytes (Linux), or ``None``."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def apply_memory_limit(budget_bytes: int) -> int | None:
    """Cap this process's address space at its current size plus ``budget_bytes``; the cap, or ``None`` if the
    platform has no such limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    current = _address_space()
    if current is None:
        return None
    return _soft_limit(resource.RLIMIT_AS, current + budget_bytes)


def _soft_limit(which: int, limit: int) -> int:
    """Set resource ``which``'s soft limit to ``limit``, or to its hard limit when that is lower; the limit set."""
    import resource

    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(which, (limit, hard))
    return limit


def cpu_limit_available() -> bool:
    """Whether this platform can cap a process's CPU time (``RLIMIT_CPU``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return False
    return hasattr(resource, "RLIMIT_CPU")


def apply_cpu_limit(seconds: float) -> int | None:
    """Let this process use ``seconds`` more CPU time: ``RLIMIT_CPU``'s soft limit set to the CPU time used so far
    plus ``seconds``, rounded up (past it the kernel sends ``SIGXCPU``, whose default action ends the process). The
    limit in seconds, or ``None`` if the platform has none."""
    if not cpu_limit_available():
        return None
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return _soft_limit(resource.RLIMIT_CPU, max(1, math.ceil(usage.ru_utime + usage.ru_stime + seconds)))


def lift_cpu_limit() -> None:
    """No CPU-time limit (up to the hard one) for this process: a worker waiting for its next document is not
    charged for the time it spends idle."""
    if not cpu_limit_available():
        return
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def _store_material(store: TrustStore) -> dict[str, Any]:
    return {
        "anchors": [c.dump() for c in store.anchors],
        "intermediates": [c.dump() for c in store.intermediates],
        "crls": [c.dump() for c in store.crls],
        "ocsps": [o.dump() for o in store.ocsps],
        "online_revocation": store.online_revocation,
        "fetch_timeout_seconds": store.fetch_timeout_seconds,
        "limits": store.limits,
    }


def _store_from(material: dict[str, Any]) -> TrustStore:
    from asn1crypto import crl, ocsp, x509

    return TrustStore(
        anchors=[x509.Certificate.load(d) for d in material["anchors"]],
        intermediates=[x509.Certificate.load(d) for d in material["intermediates"]],
        crls=[crl.CertificateList.load(d) for d in material["crls"]],
        ocsps=[ocsp.OCSPResponse.load(d) for d in material["ocsps"]],
        online_revocation=material["online_revocation"],
        fetch_timeout_seconds=material["fetch_timeout_seconds"],
        limits=material["limits"],
    )


def _worker_main(conn: Connection, work: Work, store: TrustStore | dict[str, Any], budget: Budget) -> None:
    try:
        _serve(conn, work, store, budget)
    finally:
        # Leave without the parent's exit handlers: a forked worker shares its open connections and thread
        # bookkeeping, which are the parent's to close and join.
        os._exit(0)


def _serve(conn: Connection, work: Work, store: TrustStore | dict[str, Any], budget: Budget) -> None:
    # pyHanko's object identifiers before the worker parses anything (the trust material here, or a document), and
    # completed if the parent parsed certificates before it registered them (a forked worker inherits its tables).
    register_object_identifiers()
    trust = store if isinstance(store, TrustStore) else _store_from(store)
    limit = apply_memory_limit(budget.memory_bytes)
    parent = os.getppid()
    conn.send((limit, cpu_limit_available()))
    while True:
        try:
            while not conn.poll(1.0):
                if os.getppid() != parent:
                    return  # orphaned: whoever would ask is gone
            doc = conn.recv()
        except (EOFError, OSError):
            return
        if doc is None:
            return
        try:
            apply_cpu_limit(budget.seconds_for(doc))
            report = work(doc, trust)
            if _ran_out_of_memory(report):
                report = failed_report(doc.filename, report.format, budget.memory_exceeded())
        except MemoryError:
            report = failed_report(doc.filename, _format_of(doc), budget.memory_exceeded())
        finally:
            lift_cpu_limit()
        conn.send(report)


def _format_of(doc: Document) -> Format:
    """The signature format ``doc``'s bytes show, for a report written without its validator's answer."""
    try:
        return signature_format(doc.data, doc.filename, doc.detached_signature)
    except Exception:  # noqa: BLE001 - the format is only a label: an unreadable document still gets its report
        return Format.NONE


def _ran_out_of_memory(report: SignatureReport) -> bool:
    """Whether a validator's own error boundary caught a MemoryError (it reports the exception's type)."""
    texts = [report.error or "", *(w for s in report.signatures for w in s.warnings)]
    return any("MemoryError" in text for text in texts)


#: Modules a fork server loads once, so that its workers start with the validators imported.
PRELOAD = ["signing.verify", "signing.pdf", "signing.cms", "signing.xml"]


def default_start_method() -> str:
    """``forkserver`` where available (workers share nothing with a long-running, many-threaded parent: no sockets,
    no locks), else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, work: Work, store: TrustStore, budget: Budget, start_method: str) -> None:
        context: Any = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            multiprocessing.set_forkserver_preload(PRELOAD)
        payload: TrustStore | dict[str, Any] = store if start_method == "fork" else _store_material(store)
        # One start at a time: a worker forked while another's pipe end is still open here would keep that pipe
        # open, and the parent would not see the other worker die.
        with _STARTING:
            self.conn, child = context.Pipe()
            self.process = context.Process(target=_worker_main, args=(child, work, payload, budget), daemon=True)
            self.process.start()
            child.close()
        started: tuple[int | None, bool] = self.conn.recv()
        #: The address-space cap the worker applied to itself (``None``: none available), and whether it caps its
        #: CPU time for each document (else the time budget is wall-clock time, counted here).
        self.memory_limit, self.cpu_limited = started

    def run(self, doc: Document, budget: Budget) -> SignatureReport:
        seconds = budget.seconds_for(doc)
        wait = budget.safety_seconds_for(doc) if self.cpu_limited else seconds
        try:
            self.conn.send(doc)
            if not self.conn.poll(wait):
                waited = wait if self.cpu_limited else None
                raise _WorkerLost(budget.time_exceeded(seconds, processing=self.cpu_limited, waited=waited))
            report = self.conn.recv()
        except (EOFError, OSError) as exc:
            if _SIGXCPU is not None and self._exit_code() == -_SIGXCPU:
                raise _WorkerLost(budget.time_exceeded(seconds)) from exc
            raise _WorkerLost("the validator process stopped (memory or time budget exceeded)") from exc
        assert isinstance(report, SignatureReport)
        return report

    def _exit_code(self, patience: float = 2.0) -> int | None:
        """The worker's exit code once it has ended (it is ending when its pipe closed), or ``None``."""
        # Polled rather than joined: a sibling forked later holds a copy of this process's sentinel.
        deadline = time.monotonic() + patience
        while self.process.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.process.exitcode

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self, *, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            # Polled rather than joined: a sibling forked later holds a copy of this process's sentinel.
            deadline = time.monotonic() + 2
            while self.process.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


class SandboxPool:
    """Up to ``size`` budgeted workers, each running ``work`` (a module-level function) for one document at a time,
    shared by the threads that call :meth:`run`."""

    def __init__(
        self,
        work: Work,
        store: TrustStore,
        budget: Budget = DEFAULT_BUDGET,
        *,
        size: int = 2,
        start_method: str | None = None,
    ) -> None:
        self.work = work
        self.start_method = start_method or default_start_method()
        self.store = store
        self.budget = budget
        self._slots = threading.BoundedSemaphore(max(1, size))
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    def run(self, doc: Document) -> SignatureReport:
        """The report for ``doc``, validated by a worker within the budget."""
        with self._slots:
            try:
                worker = self._take()
            except (OSError, EOFError) as exc:
                logger.error("no signature validation worker could be started: %s", type(exc).__name__)
                return failed_report(doc.filename, _format_of(doc), "the validator process could not be started")
            try:
                report = worker.run(doc, self.budget)
            except _WorkerLost as lost:
                logger.warning("signature validation stopped: %s", lost)
                worker.stop(kill=True)
                return failed_report(doc.filename, _format_of(doc), str(lost))
            except BaseException:
                worker.stop(kill=True)
                raise
            self._give_back(worker)
            return report

    def memory_limit(self) -> int | None:
        """The address-space cap a worker runs under (starting one if none is idle)."""
        with self._slots:
            worker = self._take()
            self._give_back(worker)
            return worker.memory_limit

    def _take(self) -> _Worker:
        while True:
            with self._lock:
                if not self._idle:
                    break
                worker = self._idle.pop()
            if worker.alive():
                return worker
            worker.stop(kill=True)  # ended while idle (killed from outside): not given a document
        return _Worker(self.work, self.store, self.budget, self.start_method)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.stop()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()
