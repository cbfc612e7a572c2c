"""How the commands open the database: a relative SQLite file is relative to the configuration file, ``db upgrade``
says which database and which migrations, only ``db upgrade`` migrates PostgreSQL, a created folder is said."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from gateway.cli import main
from gateway.store.database import Database
from gateway.store.engine import describe, head_revision, upgrade
from tests.databases import postgres_schema_url

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "examples" / "procedures.json"
REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009"]  # every migration, oldest first


@pytest.fixture(autouse=True)
def no_configuration_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("DVC_GATEWAY_") and "__" in name]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("DVC_GATEWAY_CONFIG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dvc-gateway: error: ")
    return lines[0]


def write_config(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[database]\nurl = {json.dumps(url)}\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------------------------------------------
# SQLite: where the file is


def test_commands_run_from_different_folders_use_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "etc" / "gateway.toml", "sqlite:///./var/gateway.db")
    first, second = tmp_path / "here", tmp_path / "there"
    first.mkdir()
    second.mkdir()

    monkeypatch.chdir(first)
    assert run(capsys, "procedure", "import", str(CATALOGUE), "--config", str(config))[0] == 0
    monkeypatch.chdir(second)
    code, out, _ = run(capsys, "procedure", "list", "--json", "--config", os.path.relpath(config, second))
    assert code == 0
    assert len(json.loads(out)) == len(json.loads(CATALOGUE.read_text(encoding="utf-8")))

    assert (tmp_path / "etc" / "var" / "gateway.db").is_file()
    assert not (first / "var").exists() and not (second / "var").exists()


def test_separate_processes_from_different_folders_use_the_same_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "etc" / "gateway.toml", "sqlite:///var/gateway.db")
    env = {name: value for name, value in os.environ.items() if not name.startswith("DVC_GATEWAY_")}
    outputs = []
    for folder in ("here", "there"):
        (tmp_path / folder).mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "db", "upgrade", "--config", str(config)],
            cwd=tmp_path / folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.splitlines())
    database = tmp_path / "etc" / "var" / "gateway.db"
    assert outputs[0][0] == outputs[1][0] == f"database {database} (SQLite)"
    assert any(line.startswith("applied") for line in outputs[0])
    assert not any(line.startswith("applied") for line in outputs[1])  # the second found it migrated
    assert database.is_file()
    assert not (tmp_path / "here" / "var").exists() and not (tmp_path / "there" / "var").exists()


def test_without_a_configuration_file_the_default_is_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "db", "upgrade")
    assert code == 0, err
    assert out.splitlines()[0] == f"database {tmp_path / 'var' / 'gateway.db'} (SQLite)"
    assert (tmp_path / "var" / "gateway.db").is_file()


# ----------------------------------------------------------------------------------------------------------------------
# db upgrade's report, the created folder


def test_db_upgrade_says_which_database_and_which_migrations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "gateway.toml", "sqlite:///data/gw.db")
    code, out, err = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"database {tmp_path / 'data' / 'gw.db'} (SQLite)"
    assert [line.split()[1] for line in lines[1:-1]] == REVISIONS
    assert lines[1] == "applied 0001 (initial schema)"
    assert lines[-1] == f"up to date: now at the head revision {head_revision()}"

    code, out, _ = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0
    assert out.splitlines() == [
        f"database {tmp_path / 'data' / 'gw.db'} (SQLite)",
        f"up to date: already at the head revision {head_revision()}, nothing applied",
    ]


def test_db_upgrade_applies_only_what_is_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database.connect(f"sqlite:///{tmp_path / 'gw.db'}")
    try:
        assert [m.revision for m in upgrade(db.engine, REVISIONS[0])] == REVISIONS[:1]
    finally:
        db.dispose()
    config = write_config(tmp_path / "gateway.toml", "sqlite:///gw.db")
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0
    assert [line.split()[1] for line in out.splitlines() if line.startswith("applied")] == REVISIONS[1:]


def test_a_created_folder_is_said_once_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "gateway.toml", "sqlite:///./state/db/gw.db")
    code, _, err = run(capsys, "agency", "list", "--config", str(config))
    assert code == 0
    assert err == f"dvc-gateway: created folder {tmp_path / 'state' / 'db'} for the database\n"
    code, _, err = run(capsys, "agency", "list", "--config", str(config))
    assert code == 0 and err == ""


def test_a_folder_that_cannot_be_created_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("a file, not a folder", encoding="utf-8")
    config = write_config(tmp_path / "gateway.toml", "sqlite:///taken/var/gw.db")
    for argv in (["db", "upgrade"], ["outbox", "list"]):
        code, _, err = run(capsys, *argv, "--config", str(config))
        assert code == 2
        assert "cannot create its folder" in one_error_line(err)


def test_a_revision_this_version_does_not_know_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "gateway.toml", "sqlite:///gw.db")
    assert run(capsys, "db", "upgrade", "--config", str(config))[0] == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'gw.db'}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for argv in (["db", "upgrade"], ["agency", "list"]):
        code, _, err = run(capsys, *argv, "--config", str(config))
        assert code == 2
        assert "is at revision 9999, which this version of dvc-gateway does not know" in one_error_line(err)


def test_the_shown_database_never_has_a_password() -> None:
    shown = describe("postgresql+psycopg://gateway:s3cr3t-password@db.example.vn:5432/gateway")
    assert shown == "postgresql+psycopg://gateway:***@db.example.vn:5432/gateway"
    assert describe("sqlite:////srv/gw.db") == "/srv/gw.db (SQLite)"


# ----------------------------------------------------------------------------------------------------------------------
# PostgreSQL: only db upgrade migrates it


@pytest.fixture
def postgres_config(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with postgres_schema_url() as url:
        yield write_config(tmp_path / "gateway.toml", url), url


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


COMMANDS = [
    ["agency", "list"],
    ["procedure", "list"],
    ["procedure", "import", str(CATALOGUE)],
    ["outbox", "list"],
    ["national", "reconcile", "--from-records", "--since", "2026-01-01"],
]


def test_commands_refuse_an_unmigrated_postgresql_database(
    postgres_config: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = postgres_config
    for argv in COMMANDS:
        code, _, err = run(capsys, *argv, "--config", str(config))
        assert code == 2, (argv, err)
        line = one_error_line(err)
        assert line.endswith("is not migrated: run 'dvc-gateway db upgrade'"), line
        assert describe(url) in line
    assert _tables(url) == []  # nothing migrated it behind the operator's back

    code, out, err = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"database {describe(url)}"
    assert [line.split()[1] for line in lines[1:-1]] == REVISIONS
    assert lines[-1] == f"up to date: now at the head revision {head_revision()}"
    assert run(capsys, "agency", "list", "--config", str(config))[0] == 0


def test_commands_refuse_a_postgresql_database_behind_the_newest_migration(
    postgres_config: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, url = postgres_config
    db = Database.connect(url)
    try:
        upgrade(db.engine, REVISIONS[0])
    finally:
        db.dispose()
    code, _, err = run(capsys, "outbox", "list", "--config", str(config))
    assert code == 2
    assert one_error_line(err).endswith(
        f"is at revision {REVISIONS[0]}, not at the newest ({head_revision()}): run 'dvc-gateway db upgrade'"
    )
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(config))
    assert code == 0
    assert [line.split()[1] for line in out.splitlines() if line.startswith("applied")] == REVISIONS[1:]
    assert run(capsys, "outbox", "list", "--config", str(config))[0] == 0
