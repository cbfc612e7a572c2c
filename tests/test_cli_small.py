"""Small command-line contracts: every subcommand describes itself, data is printed as data (never as Rich markup),
and ``national reconcile --resync`` needs the national portal."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.cli import COMMANDS, build_parser, main
from gateway.recording.har import Exchange, write_har
from gateway.store.database import Database
from gateway.store.models import Dossier, HistoryEntry, OutboxMessage, utcnow

AGENCY = "000.00.23.H38"


def _undescribed(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """``name`` and its subcommands (recursively) whose parser has no description (a sentence)."""
    missing = [] if (parser.description or "").strip().endswith(".") else [name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                missing += _undescribed(child, f"{name} {child_name}")
    return missing


@pytest.mark.parametrize("command", [name for name, _, _ in COMMANDS])
def test_every_subcommand_has_a_description(command: str) -> None:
    [commands] = [a for a in build_parser([command])._actions if isinstance(a, argparse._SubParsersAction)]
    assert _undescribed(commands.choices[command], command) == []


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dvc-gateway: error: ")
    return lines[0]


# --- data with brackets -----------------------------------------------------------------------------------------------


def test_cassette_show_prints_bracketed_urls_as_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "cassettes"
    directory.mkdir()
    exchange = Exchange(
        method="GET",
        url="https://motcua.example.vn/api/dossiers?filter[status]=received&[b]=1",
        status=200,
        response_headers=(("Content-Type", "application/json"),),
        response_body=b"{}",
        upstream="agency:[sxd]",
    )
    write_har(directory / "one.har", [exchange])
    assert main(["cassette", "show", str(directory)]) == 0
    out = "".join(capsys.readouterr().out.split())  # the table may wrap a long URL
    assert "filter[status]=received&[b]=1" in out
    assert "agency:[sxd]" in out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration without [national_portal] (the integration is off), on a migrated SQLite database."""
    path = tmp_path / "gateway.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n', encoding="utf-8")
    database = Database.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    database.upgrade()
    database.dispose()
    return path


def test_procedure_list_prints_bracketed_names_as_is(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = [
        {
            "code": "1.009794",
            "name": "Cấp giấy phép [thí điểm] [b]",
            "agencies": [AGENCY],
            "processing_days": 15,
            "components": [{"code": "TP1", "name": "Đơn", "required": True, "must_be_signed": False}],
            "fees": [],
        }
    ]
    file = tmp_path / "catalogue.json"
    file.write_text(json.dumps(catalogue, ensure_ascii=False), encoding="utf-8")
    assert main(["procedure", "import", str(file), "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["procedure", "list", "--config", str(config)]) == 0
    assert "[thí điểm] [b]" in capsys.readouterr().out


# --- national reconcile --resync without a national portal ------------------------------------------------------------


def _changed_dossier(config: Path) -> None:
    database = Database.connect(f"sqlite:///{config.parent / 'gw.db'}")
    try:
        with database.unit_of_work() as session:
            dossier = Dossier(
                code=f"{AGENCY}-261123-0001",
                procedure_code="1.009794",
                agency_code=AGENCY,
                lead_agency_code=AGENCY,
                status="received",
                applicant={"kind": "citizen", "full_name": "Nguyễn Văn A"},
            )
            session.add(dossier)
            session.flush()
            session.add(HistoryEntry(dossier_id=dossier.id, status="received", actor="test"))
    finally:
        database.dispose()


def _outbox_size(config: Path) -> int:
    database = Database.connect(f"sqlite:///{config.parent / 'gw.db'}")
    try:
        with database.unit_of_work() as session:
            return session.query(OutboxMessage).count()
    finally:
        database.dispose()


def test_resync_from_records_is_refused_without_the_national_portal(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _changed_dossier(config)
    since = (utcnow() - timedelta(days=1)).date().isoformat()
    argv = ["national", "reconcile", "--since", since, "--from-records", "--config", str(config)]
    # Without --resync the records are compared: the dossier was never synced, so it is listed.
    assert main(argv) == 1
    assert f"{AGENCY}-261123-0001" in capsys.readouterr().out

    assert main([*argv, "--resync"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    line = _one_error_line(captured.err)
    assert "national portal integration is off" in line and "set [national_portal] base_url" in line
    assert _outbox_size(config) == 0  # nothing queued
