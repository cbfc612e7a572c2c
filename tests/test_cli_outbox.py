"""``dvc-gateway outbox list [--state STATE] [--json]`` and ``outbox redrive ID|--all``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import outbox
from gateway.cli import main
from gateway.store.database import Database

WORKER = "w1"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n', encoding="utf-8")
    return path


def enqueue(
    db: Database,
    code: str,
    *,
    target: str = "000.00.23.H38",
    dead: bool = False,
    error: str = "PermanentError: agency:x: request refused (HTTP 400)",
) -> int:
    with db.unit_of_work() as session:
        message = outbox.enqueue(
            session,
            kind="agency.deliver",
            target=target,
            payload={"dossier_code": code, "agency_code": target},
            idempotency_key=outbox.message_key(code, f"deliver:{target}"),
            ordering_key=code,
        )
        message_id = message.id
    if dead:
        with db.unit_of_work() as session:
            [claimed] = outbox.claim(session, worker_id=WORKER, limit=1, lease=timedelta(seconds=30))
            assert claimed.id == message_id
            outbox.fail(session, message_id, WORKER, error, retryable=False)
    return message_id


def state_of(db: Database, message_id: int) -> str:
    with db.unit_of_work() as session:
        message = outbox.get(session, message_id)
        assert message is not None
        return message.state


def test_list_json_and_state_filter(db: Database, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = enqueue(db, "000.00.23.H38-261123-0001", dead=True)
    pending = enqueue(db, "000.00.23.H38-261123-0002")

    assert main(["outbox", "list", "--json", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["id"] for m in listed] == [dead, pending]
    assert listed[0]["state"] == "dead"
    assert listed[0]["dossier_code"] == "000.00.23.H38-261123-0001"
    assert listed[0]["attempts"] == 1
    assert "HTTP 400" in listed[0]["last_error"]
    assert "payload" not in listed[0]

    assert main(["outbox", "list", "--state", "dead", "--json", "--config", str(config)]) == 0
    assert [m["id"] for m in json.loads(capsys.readouterr().out)] == [dead]

    assert main(["outbox", "list", "--target", "portal", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_list_table(db: Database, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "list", "--state", "dead", "--config", str(config)]) == 0
    assert "No dead messages" in capsys.readouterr().out
    enqueue(db, "000.00.23.H38-261123-0001", dead=True)
    assert main(["outbox", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "agency.deliver" in out
    assert "dead" in out


def test_list_table_shows_bracketed_text_as_is(db: Database, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agency's error text is data: "[...]" in it is printed, not read as Rich markup."""
    error = "PermanentError: agency:x: [bold]HTTP 400[/bold] [ERR-17] field [applicant.id_number] invalid"
    enqueue(db, "000.00.23.H38-261123-0001", target="[portal]", dead=True, error=error)
    assert main(["outbox", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[bold]HTTP 400[/bold] [ERR-17]" in out
    assert "[applicant.id_number]" in out
    assert "[portal]" in out


def test_redrive_one_and_all(db: Database, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = enqueue(db, "000.00.23.H38-261123-0001", dead=True)
    second = enqueue(db, "000.00.23.H38-261123-0002", dead=True)
    pending = enqueue(db, "000.00.23.H38-261123-0003")

    assert main(["outbox", "redrive", str(first), "--config", str(config)]) == 0
    assert f"message {first} redriven" in capsys.readouterr().out
    assert state_of(db, first) == "pending"
    assert state_of(db, second) == "dead"

    assert main(["outbox", "redrive", str(pending), "--config", str(config)]) == 1
    assert "it is pending, not dead" in capsys.readouterr().err
    assert main(["outbox", "redrive", "999", "--config", str(config)]) == 1
    assert "no such message" in capsys.readouterr().err

    assert main(["outbox", "redrive", "--all", "--config", str(config)]) == 0
    assert "1 dead message redriven" in capsys.readouterr().out
    assert state_of(db, second) == "pending"
    with db.unit_of_work() as session:
        redriven = outbox.get(session, second)
        assert redriven is not None and redriven.attempts == 0


def test_redrive_usage_errors(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "redrive", "--config", str(config)]) == 2
    assert main(["outbox", "redrive", "3", "--all", "--config", str(config)]) == 2
    assert main(["outbox", "redrive", "0", "--config", str(config)]) == 2
    assert main(["outbox", "list", "--state", "lost", "--config", str(config)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4
    assert all(line.startswith("dvc-gateway: error:") for line in errors)
