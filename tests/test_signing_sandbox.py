"""The time budget is one of processing (the worker's CPU time), not of waiting: a verdict must not depend on how
busy the machine is. The workers here run a stand-in validation that spins, sleeps or answers at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from signing import sandbox
from signing.limits import Budget
from signing.report import Format, SignatureReport, Verdict
from signing.sandbox import SandboxPool
from signing.trust import TrustStore
from signing.verify import Document
from tests.reports import FORMAT_FAILURE, only, outcome

#: A PDF's first bytes: what the sniffer needs to name the format of a report the worker never wrote.
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"


def stand_in(doc: Document, _store: TrustStore) -> SignatureReport:
    """The worker's "validation": ``spin…`` burns CPU until stopped, ``sleep…`` waits without working for the
    seconds its data names after ``|``, anything else answers at once (unsigned)."""
    if doc.filename.startswith("spin"):
        while True:
            pass
    if doc.filename.startswith("sleep"):
        time.sleep(float(doc.data.rsplit(b"|", 1)[1]))
    return SignatureReport(file=doc.filename, format=Format.NONE)


@pytest.fixture
def store() -> TrustStore:
    return TrustStore(anchors=[])


def _pool(store: TrustStore, budget: Budget, start_method: str | None = None) -> SandboxPool:
    return SandboxPool(stand_in, store, budget, size=1, start_method=start_method)


def test_a_worker_burning_cpu_past_its_budget_is_stopped_by_its_cpu_limit_and_replaced(store):
    # One second of processing; the wall-clock safety stop is far off, so only the CPU limit can end the work.
    pool = _pool(store, Budget(base_seconds=1, seconds_per_mib=0, safety_factor=600))
    try:
        report = pool.run(Document(PDF, "spin.pdf"))
        after = pool.run(Document(PDF, "after.pdf"))  # a new worker
    finally:
        pool.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert only(report).warnings == ("time budget exceeded (limit 1 s of processing for this document)",)
    # The report names the format the bytes show (a PDF), not "none" beside a signature result.
    assert report.to_json()["format"] == "pades" and report.signed
    assert after.verdict is Verdict.UNSIGNED and after.file == "after.pdf"


def test_a_worker_waiting_longer_than_its_cpu_budget_is_not_cut_off(store):
    # Two and a half seconds of waiting against one second of processing: no processing budget is used up.
    pool = _pool(store, Budget(base_seconds=1, seconds_per_mib=0, safety_factor=60))
    try:
        report = pool.run(Document(PDF + b"|2.5", "sleep.pdf"))
    finally:
        pool.close()
    assert report.verdict is Verdict.UNSIGNED, report.to_json()
    assert report.file == "sleep.pdf"


def test_a_worker_that_does_not_answer_is_stopped_at_the_safety_stop(store):
    pool = _pool(store, Budget(base_seconds=0.25, seconds_per_mib=0, safety_factor=2))
    try:
        report = pool.run(Document(PDF + b"|600", "sleep.pdf"))
        after = pool.run(Document(PDF, "after.pdf"))
    finally:
        pool.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert only(report).warnings == (
        "time budget exceeded (limit 1 s of processing for this document; no answer after 1 s)",
    )
    assert report.format is Format.PADES
    assert after.verdict is Verdict.UNSIGNED


def test_without_a_cpu_limit_the_budget_is_wall_clock_time(store, monkeypatch):
    # A platform without RLIMIT_CPU: the forked worker inherits the patched check and applies no CPU limit.
    monkeypatch.setattr(sandbox, "cpu_limit_available", lambda: False)
    pool = _pool(store, Budget(base_seconds=1, seconds_per_mib=0, safety_factor=60), start_method="fork")
    try:
        report = pool.run(Document(PDF + b"|600", "sleep.pdf"))
    finally:
        pool.close()
    assert outcome(report) == FORMAT_FAILURE, report.to_json()
    assert only(report).warnings == ("time budget exceeded (limit 1 s for this document)",)


def test_a_worker_that_ended_while_idle_is_not_given_a_document(store):
    pool = _pool(store, Budget(base_seconds=5, seconds_per_mib=0))
    try:
        first = pool.run(Document(PDF, "first.pdf"))
        (idle,) = pool._idle
        os.kill(idle.process.pid, signal.SIGKILL)  # ended from outside between two documents
        while idle.alive():
            time.sleep(0.01)
        second = pool.run(Document(PDF, "second.pdf"))
    finally:
        pool.close()
    assert first.verdict is Verdict.UNSIGNED
    assert second.verdict is Verdict.UNSIGNED, second.to_json()


def test_the_budget_names_its_time_and_its_safety_stop():
    budget = Budget(base_seconds=30, seconds_per_mib=0.25)
    doc = Document(b"x" * (4 * 1024 * 1024))
    assert budget.seconds_for(doc) == 31
    assert budget.safety_seconds_for(doc) == 4 * 31
