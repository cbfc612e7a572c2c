"""``dvc-gateway audit verify|export``: changing, inserting or deleting an audit row fails verification naming that
row; reads of personal data and operators' actions are entries of the chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from gateway import audit, outbox
from gateway.cli import main
from gateway.store.database import Database
from gateway.store.models import AuditEntry, OutboxMessage
from tests.api_support import AGENCY_AUTH, PORTAL, Gateway
from tests.databases import BACKENDS, open_database

pytest_plugins = ("tests.api_fixtures",)

AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_database(request.param, tmp_path) as database:
        for i in range(6):
            with database.unit_of_work() as session:
                audit.lock_for_write(session)
                audit.append(session, "admin", "agency.registered", f"000.00.{i}.H38", {"n": i}, at=AT)
        yield database


@pytest.fixture
def config(db: Database, tmp_path: Path) -> str:
    path = tmp_path / "gateway.toml"
    url = db.engine.url.render_as_string(hide_password=False)
    path.write_text(f"[database]\nurl = {json.dumps(url)}\n", encoding="utf-8")
    return str(path)


def ids(db: Database) -> list[int]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)))


def verify(config: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--config", config, *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_an_intact_trail_verifies_and_its_head_is_printed(
    db: Database, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(config, capsys)
    with db.unit_of_work() as session:
        head = audit.head(session)
    assert code == 0 and out.strip() == f"audit trail intact: 6 entries, head {head}"
    assert verify(config, capsys, "--head", head)[0] == 0


def test_a_changed_row_is_named(db: Database, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    third = ids(db)[2]
    with db.unit_of_work() as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == third).values(subject="000.00.99.H38"))
    code, out = verify(config, capsys)
    assert code == 1
    assert out.startswith(f"dvc-gateway: error: audit trail broken: entry {third}: ") and "altered" in out
    assert len(out.strip().splitlines()) == 1


def test_an_inserted_row_is_named(db: Database, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    third = ids(db)[2]
    with db.unit_of_work() as session:
        # Make room after the second entry (as an intruder would), then slip a well-formed entry in.
        session.execute(update(AuditEntry).where(AuditEntry.id >= third).values(id=-AuditEntry.id - 1))
        session.execute(update(AuditEntry).where(AuditEntry.id < 0).values(id=-AuditEntry.id))
        prev = "f" * 64
        forged = audit.entry_hash(prev, at=AT, actor="admin", action="agency.removed", subject="X", details={})
        session.execute(
            insert(AuditEntry).values(
                id=third,
                at=AT,
                actor="admin",
                action="agency.removed",
                subject="X",
                details={},
                prev_hash=prev,
                hash=forged,
            )
        )
    code, out = verify(config, capsys)
    assert code == 1
    assert f"entry {third} was inserted" in out and f"entry {third + 1} does" in out


def test_a_deleted_row_is_named(db: Database, config: str, capsys: pytest.CaptureFixture[str]) -> None:
    entries = ids(db)
    with db.unit_of_work() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == entries[3]))
    code, out = verify(config, capsys)
    assert code == 1 and f"entry {entries[3]} was removed" in out


def test_a_deleted_newest_row_is_seen_against_the_recorded_head(
    db: Database, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with db.unit_of_work() as session:
        head = audit.head(session)
        session.execute(delete(AuditEntry).where(AuditEntry.id == ids(db)[-1]))
    assert verify(config, capsys)[0] == 0
    code, out = verify(config, capsys, "--head", head)
    assert code == 1 and "head entry is missing" in out
    assert verify(config, capsys, "--head", "xyz")[0] == 2


def test_export_writes_json_lines_that_verify_again(
    db: Database, config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--since", "2026-11-23", "--output", str(output), "--config", config]) == 0
    lines = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == ids(db)
    previous = audit.GENESIS
    for line in lines:
        assert line["prev_hash"] == previous
        at = datetime.fromisoformat(line["at"])
        fields = {k: line[k] for k in ("actor", "action", "subject", "details")}
        assert audit.entry_hash(previous, at=at, **fields) == line["hash"]
        previous = line["hash"]
    assert main(["audit", "export", "--since", "2026-11-24", "--config", config]) == 0
    assert "6 audit entries written" in capsys.readouterr().err
    assert main(["audit", "export", "--since", "2026-11-24", "--config", config]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "export", "--since", "23/11/2026", "--config", config]) == 2


async def test_reading_a_dossier_and_redriving_are_entries(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (await gw.submitted())["code"]
    await gw.get(code, PORTAL)
    await gw.get(code, AGENCY_AUTH)
    with gw.db.unit_of_work() as session:
        reads = session.scalars(select(AuditEntry).where(AuditEntry.action == "dossier.read")).all()
        assert [(e.actor, e.subject) for e in reads] == [("portal", code), ("agency:000.00.23.H38", code)]
        assert reads[0].details == {"fields": ["applicant", "delivery_address"]}
        message = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).first()
        assert message is not None
        session.execute(update(OutboxMessage).where(OutboxMessage.id == message.id).values(state=outbox.DEAD))
    config = tmp_path / "gateway.toml"
    url = gw.runtime.settings.database.url
    config.write_text(f"[database]\nurl = {json.dumps(url)}\n", encoding="utf-8")
    assert main(["outbox", "redrive", str(message.id), "--config", str(config)]) == 0
    with gw.db.unit_of_work() as session:
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.action == "outbox.redrive" and last.subject == str(message.id)
        assert last.actor.startswith("cli")
        assert audit.verify(session) == []
    capsys.readouterr()


def test_a_catalogue_import_from_the_command_line_is_an_entry(
    db: Database, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = Path(__file__).resolve().parent.parent / "examples" / "procedures.json"
    assert main(["procedure", "import", str(catalogue), "--config", config]) == 0
    with db.unit_of_work() as session:
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last is not None and (last.action, last.subject) == ("procedure.imported", "catalogue")
        assert "1.009794" in last.details["codes"] and last.details["created"] >= 1
    assert verify(config, capsys)[0] == 0
