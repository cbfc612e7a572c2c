"""History entries, the flows' steps (``record_step``) and status changes (``record_change``): written at once with a
plain statement when nothing else waits for a flush, by the unit of work's next flush otherwise; the history stays in
the order the entries were recorded either way.

On SQLite and (when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set) on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth import Principal
from gateway.bus import QUIET
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status
from gateway.runtime import Runtime
from gateway.services.changes import find_dossier, record_change, record_step
from gateway.store.models import HistoryEntry
from gateway.unit_of_work import UnitOfWork
from tests.api_support import open_runtime, submission
from tests.core_support import submit
from tests.databases import BACKENDS

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with open_runtime(request.param, tmp_path) as opened:
        yield opened


def _submitted(runtime: Runtime) -> dict[str, Any]:
    answer = asyncio.run(submit(runtime, Principal("portal"), submission(), now=NOW))
    assert answer.status == 201, answer.body
    return answer.body


def _stored(runtime: Runtime, code: str) -> list[tuple[str, str | None]]:
    """The dossier's history as stored, in id order: (status, step) of each entry."""
    with runtime.db.unit_of_work() as session:
        dossier = find_dossier(session, code)
        rows = session.scalars(
            select(HistoryEntry).where(HistoryEntry.dossier_id == dossier.id).order_by(HistoryEntry.id)
        )
        return [(row.status, (row.details or {}).get("step")) for row in rows]


def test_intake_writes_its_steps_without_a_flush(runtime: Runtime, flushes: list[Session]) -> None:
    body = _submitted(runtime)
    # The dossier and its first entry are written at once (see test_written_rows.py), and so are the flows' steps.
    assert flushes == []
    shown = [(item["status"], item.get("step")) for item in body["history"]]
    steps = ["payment_skipped", "postal_skipped", "national_sync_skipped"]  # the flows' order on the bus
    assert shown == [("submitted", None)] + [("submitted", step) for step in steps]
    assert _stored(runtime, body["code"]) == shown


def test_a_step_written_at_once_is_a_row_of_the_unit_of_work(runtime: Runtime, flushes: list[Session]) -> None:
    code = _submitted(runtime)["code"]
    flushes.clear()
    with runtime.db.unit_of_work() as session:
        dossier = find_dossier(session, code)
        before = list(dossier.history)
        entry = record_step(session, dossier, step="postal_skipped", at=NOW, actor="postal", note="no postal service")
        assert entry.id is not None and entry.dossier_id == dossier.id  # written, no flush needed
        assert entry.dossier is dossier and dossier.history == [*before, entry]
        assert not session.new and not session.dirty and entry in session
    assert flushes == []
    assert _stored(runtime, code)[-1] == ("submitted", "postal_skipped")


def test_a_step_written_at_once_is_rolled_back_with_its_unit_of_work(runtime: Runtime) -> None:
    code = _submitted(runtime)["code"]
    stored = _stored(runtime, code)
    with pytest.raises(RuntimeError), runtime.db.unit_of_work() as session:
        dossier = find_dossier(session, code)
        assert dossier.history  # loaded: a step can be written at once
        assert record_step(session, dossier, step="postal_skipped", at=NOW, actor="postal", note="n").id is not None
        raise RuntimeError("the unit of work fails after the step")
    assert _stored(runtime, code) == stored


def test_a_step_after_a_pending_entry_waits_for_the_flush(runtime: Runtime) -> None:
    code = _submitted(runtime)["code"]
    with runtime.db.unit_of_work() as session:
        dossier = find_dossier(session, code)
        pending = HistoryEntry(status="received", at=NOW, actor="agency", note=None, details={})
        dossier.history.append(pending)
        step = record_step(session, dossier, step="postal_skipped", at=NOW, actor="postal", note="n")
        assert step.id is None  # written by the flush, after the entry recorded before it
        dossier.status = "received"
    assert _stored(runtime, code)[-2:] == [("received", None), ("submitted", "postal_skipped")]


def test_a_step_in_a_savepoint_waits_for_the_flush_and_goes_with_it(runtime: Runtime) -> None:
    code = _submitted(runtime)["code"]
    stored = _stored(runtime, code)
    with runtime.db.unit_of_work() as session:
        dossier = find_dossier(session, code)
        assert dossier.history  # loaded: only the savepoint keeps the step from being written at once
        savepoint = session.begin_nested()
        step = record_step(session, dossier, step="postal_skipped", at=NOW, actor="postal", note="n")
        assert step.id is None
        savepoint.rollback()
        assert step not in dossier.history
    assert _stored(runtime, code) == stored


def test_status_changes_write_their_entries_at_once_in_order(runtime: Runtime, flushes: list[Session]) -> None:
    """A status change writes its entry at once too; its flush then writes only the dossier (status, deadlines,
    version). Two changes and a step in one unit of work keep their order."""
    code = _submitted(runtime)["code"]
    stored = _stored(runtime, code)
    flushes.clear()
    with runtime.db.unit_of_work() as session:
        uow = UnitOfWork(session, QUIET)  # no handler: only the changes themselves
        dossier = find_dossier(session, code)  # its procedure not read yet: reading it flushes nothing
        version = dossier.version
        changes = {"calendar": OfficeCalendar(), "now": NOW, "note": None, "details": {}}
        received = record_change(uow, dossier, status=Status.RECEIVED, at=NOW, actor="agency", **changes)
        assert received.id is not None and received in session and not session.new
        step = record_step(session, dossier, step="postal_skipped", at=NOW, actor="postal", note="n")
        processing = record_change(uow, dossier, status=Status.PROCESSING, at=NOW, actor="agency", **changes)
        assert received.id < step.id < processing.id
        assert dossier.history[-3:] == [received, step, processing]
        assert len(flushes) == 2 and dossier.version == version + 2  # one versioned UPDATE per change
    assert _stored(runtime, code) == [
        *stored,
        ("received", None),
        ("received", "postal_skipped"),
        ("processing", None),
    ]


def test_a_change_waiting_on_the_dossier_goes_with_the_status_change(runtime: Runtime, flushes: list[Session]) -> None:
    """What a use case changed on the dossier before its status change (a completion's time, say) is written with
    the change: one flush, one versioned ``UPDATE``, the entry still at once."""
    code = _submitted(runtime)["code"]
    flushes.clear()
    with runtime.db.unit_of_work() as session:
        uow = UnitOfWork(session, QUIET)
        dossier = find_dossier(session, code)
        version = dossier.version
        assert dossier.history  # read first, as an agency's event reads it (a lazy load would flush the change)
        dossier.summary = "Tóm tắt mới"
        changes = {"calendar": OfficeCalendar(), "now": NOW, "note": None, "details": {}}
        received = record_change(uow, dossier, status=Status.RECEIVED, at=NOW, actor="agency", **changes)
        assert received.id is not None and not session.dirty
        assert len(flushes) == 1 and dossier.version == version + 1
    with runtime.db.unit_of_work() as session:
        stored = find_dossier(session, code)
        assert (stored.summary, stored.status, stored.version) == ("Tóm tắt mới", "received", version + 1)
