"""Reading ahead: the outbox worker asks the dispatcher to read what the claimed agency messages need in the claim's
unit of work, so that each delivery starts with its document; what reaches the agency is unchanged, and a failure
while reading ahead costs only the reading ahead (each delivery then reads for itself)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from gateway import outbox
from gateway.bootstrap import Composition
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.outbox import RetryPolicy
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.simulators.agency import AgencySimulator
from gateway.simulators.agency import create_app as create_simulator
from gateway.store.models import Dossier
from gateway.views import agency_document
from gateway.workers import MessageView, OutboxWorker
from tests.databases import BACKENDS, open_database
from tests.test_dispatch import (
    AGENCY,
    CATALOGUE,
    OUTBOUND_TOKEN,
    Served,
    register_agency,
    registration,
    serve,
    submit_dossier,
)


@pytest.fixture(params=BACKENDS)
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    with open_database(request.param, tmp_path) as db:
        settings = Settings.from_raw({"registry": {"allow_private_endpoints": True}}, tmp_path)
        rt = Runtime(settings=settings, db=db)
        with db.unit_of_work() as session:
            import_procedures(session, parse_catalogue(CATALOGUE))
        yield rt
        if "verifier" in rt.__dict__:
            rt.verifier.close()


@pytest.fixture
async def agency(tmp_path: Path) -> AsyncIterator[tuple[Served, AgencySimulator, Path]]:
    token_file = tmp_path / "outbound-token"
    token_file.write_text(OUTBOUND_TOKEN, encoding="utf-8")
    app = create_simulator(token=OUTBOUND_TOKEN)
    served = await serve(app)
    yield served, app.state.simulator, token_file
    await served.close()


class Watching:
    """The composition, noting for each delivery whether it arrived read ahead; ``broken`` makes reading ahead fail
    on a database error (a statement the database refuses) after it began."""

    def __init__(self, inner: Composition, *, broken: bool = False) -> None:
        self.inner = inner
        self.broken = broken
        self.arrived: dict[str, bool] = {}
        self.statements: list[tuple[int, int]] = []  # (messages, statements) of each read ahead

    def prepare(self, session: Session, messages: list[MessageView]) -> list[MessageView]:
        executed: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT")):  # PostgreSQL's, around reading ahead
                executed.append(statement)

        event.listen(self.inner.runtime.db.engine, "before_cursor_execute", note)
        try:
            prepared = self.inner.prepare(session, messages)
        finally:
            event.remove(self.inner.runtime.db.engine, "before_cursor_execute", note)
        self.statements.append((len(messages), len(executed)))
        if self.broken:
            session.execute(text("SELECT no_such_column FROM outbox"))
        return prepared

    async def dispatch(self, message: MessageView) -> None:
        self.arrived[message.payload["dossier_code"]] = message.prepared is not None
        await self.inner.dispatch(message)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def deliver_all(runtime: Runtime, dispatcher: Watching, codes: list[str], sim: AgencySimulator) -> None:
    worker = OutboxWorker(runtime.db, dispatcher, policy=RetryPolicy(max_attempts=3, initial_seconds=0.01), batch=8)
    try:
        with anyio.fail_after(30):
            while not all(code in sim.dossiers for code in codes):
                await worker.run_once()
    finally:
        await dispatcher.aclose()


def expected_documents(runtime: Runtime, codes: list[str]) -> dict[str, dict[str, Any]]:
    with runtime.db.unit_of_work() as session:
        dossiers = session.scalars(select(Dossier).where(Dossier.code.in_(codes))).all()
        return {d.code: agency_document(session, d, agency_code=AGENCY) for d in dossiers}


async def test_claimed_deliveries_arrive_read_ahead_and_reach_the_agency_unchanged(
    runtime: Runtime, agency: tuple[Served, AgencySimulator, Path]
) -> None:
    served, sim, token_file = agency
    register_agency(runtime, registration(served.url, token_file))
    codes = [await submit_dossier(runtime) for _ in range(3)]
    dispatcher = Watching(Composition(runtime))
    await deliver_all(runtime, dispatcher, codes, sim)
    assert dispatcher.arrived == dict.fromkeys(codes, True)
    expected = expected_documents(runtime, codes)
    assert {code: sim.dossiers[code]["received"] for code in codes} == expected
    with runtime.db.unit_of_work() as session:
        assert outbox.stats(session)["done"] == 3


async def test_a_failing_read_ahead_keeps_the_claim_and_each_delivery_reads_for_itself(
    runtime: Runtime, agency: tuple[Served, AgencySimulator, Path], caplog: pytest.LogCaptureFixture
) -> None:
    served, sim, token_file = agency
    register_agency(runtime, registration(served.url, token_file))
    codes = [await submit_dossier(runtime) for _ in range(2)]
    dispatcher = Watching(Composition(runtime), broken=True)
    await deliver_all(runtime, dispatcher, codes, sim)
    assert dispatcher.arrived == dict.fromkeys(codes, False)
    assert {code: sim.dossiers[code]["received"] for code in codes} == expected_documents(runtime, codes)
    assert sim.effects["deliver"] == 2
    assert "reading ahead failed" in caplog.text
    with runtime.db.unit_of_work() as session:
        stats = outbox.stats(session)
    assert stats["done"] == 2 and stats["in_flight"] == 0 and stats["dead"] == 0


async def test_reading_ahead_costs_the_same_statements_for_one_delivery_or_many(
    runtime: Runtime, agency: tuple[Served, AgencySimulator, Path]
) -> None:
    served, sim, token_file = agency
    register_agency(runtime, registration(served.url, token_file))
    counts = []
    for size in (1, 4):  # 4: the most a claim takes for one agency by default
        codes = [await submit_dossier(runtime) for _ in range(size)]
        dispatcher = Watching(Composition(runtime))
        await deliver_all(runtime, dispatcher, codes, sim)
        assert dispatcher.arrived == dict.fromkeys(codes, True)
        assert dispatcher.statements[0][0] == size
        counts.append(dispatcher.statements[0][1])
    # The dossiers with their files and their procedures' fee rules, their fees, the agency's registration: one query
    # each, whatever the batch's size.
    assert counts == [3, 3]
    assert {code: sim.dossiers[code]["received"] for code in codes} == expected_documents(runtime, codes)
