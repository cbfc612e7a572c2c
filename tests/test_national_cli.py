"""``dvc-gateway national reconcile`` and ``dvc-gateway procedure sync`` against the simulated national portal.

The gateway and its delivery are those of ``tests/test_national_sync.py`` (``tests/national_sync_fixtures.py``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from gateway.catalogue import get_procedure
from gateway.cli import main
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.store.models import utcnow
from tests.national_sync_fixtures import *  # noqa: F403  (the fixtures: pytest finds them in this module)
from tests.national_sync_support import (
    AGENCY,
    PROCEDURE,
    Delivery,
    Gateway,
    close_gateway,
    event,
    expected_progress,
    open_gateway,
    portal_section,
    progress_of,
    submit_dossier,
    sync_messages,
    write_config,
)
from tests.servers import ServerThread

# ----------------------------------------------------------------------------------------------------------------------
# dvc-gateway national reconcile


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await anyio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_reconcile_lists_mismatches_and_resync_fixes_them(
    gw: Gateway, delivery: Delivery, sim: NationalPortalSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    same, diverged, lost = [await submit_dossier(gw) for _ in range(3)]
    await event(gw, diverged, "received")
    await event(gw, lost, "received")
    await delivery.drain()
    sim.dossiers[diverged]["TrangThaiHoSo"] = 3  # the portal shows something else
    del sim.dossiers[lost]  # the portal lost it
    since = (utcnow() - timedelta(days=1)).date().isoformat()
    config = str(gw.config_path)

    status, out, err = await cli(capsys, "national", "reconcile", "--since", since, "--json", "--config", config)
    assert status == 1, err
    report = json.loads(out)
    assert report["checked"] == 3 and report["source"] == "portal" and report["resynced"] is False
    found = {item["dossier_code"]: item for item in report["mismatches"]}
    assert set(found) == {diverged, lost}
    assert (found[diverged]["local_code"], found[diverged]["national_code"]) == (2, 3)
    assert (found[lost]["local_code"], found[lost]["national_code"]) == (2, None)
    assert sim.counters["lookups"] == 1  # one batched lookup of the three

    status, out, _ = await cli(capsys, "national", "reconcile", "--since", since, "--config", config)
    assert status == 1 and "2 of 3 dossier(s) differ from the national portal" in out
    assert diverged in out and lost in out and same not in out and "--resync" in out

    # The gateway's own records say all is well: the difference is the portal's.
    status, out, _ = await cli(
        capsys, "national", "reconcile", "--since", since, "--from-records", "--json", "--config", config
    )
    assert status == 0 and json.loads(out)["mismatches"] == []

    status, out, err = await cli(
        capsys, "national", "reconcile", "--since", since, "--resync", "--json", "--config", config
    )
    assert status == 0, err
    assert json.loads(out)["resynced"] is True
    resyncs = [m for m in sync_messages(gw, diverged) + sync_messages(gw, lost) if m.payload.get("resync")]
    assert {(m.payload["dossier_code"], m.payload["full"]) for m in resyncs} == {(diverged, False), (lost, True)}
    await delivery.drain()
    assert sim.dossiers[diverged]["TrangThaiHoSo"] == 2
    assert sim.dossiers[lost]["TrangThaiHoSo"] == 2
    assert progress_of(sim, lost) == expected_progress(gw, lost)  # the whole history again
    assert sim.dossiers[same]["updates"] == 0  # untouched

    status, out, _ = await cli(capsys, "national", "reconcile", "--since", since, "--config", config)
    assert status == 0 and "all match the national portal" in out


async def test_reconcile_errors_are_one_line(gw: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = await cli(capsys, "national", "reconcile", "--since", "hôm qua", "--config", str(gw.config_path))
    assert status == 2 and err.count("\n") == 1 and "--since" in err
    (tmp_path / "off").mkdir()
    off = write_config(tmp_path / "off", f"sqlite:///{tmp_path / 'off.db'}", None)
    status, _, err = await cli(capsys, "national", "reconcile", "--since", "2026-11-01", "--config", str(off))
    assert status == 2 and err.count("\n") == 1 and "base_url" in err and "not configured" in err


# ----------------------------------------------------------------------------------------------------------------------
# dvc-gateway procedure sync


def test_procedure_sync_fills_the_catalogue(
    tmp_path: Path, database_url: str, portal_server: ServerThread, sim: NationalPortalSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    gateway = open_gateway(tmp_path, database_url, portal_section(portal_server.base_url, tmp_path))
    try:
        capsys.readouterr()
        assert main(["procedure", "sync", "--json", "--config", str(gateway.config_path)]) == 0
        outcome = json.loads(capsys.readouterr().out)
        assert (outcome["pulled"], outcome["created"], outcome["updated"], outcome["unchanged"]) == (3, 1, 1, 0)
        assert [item["code"] for item in outcome["skipped"]] == ["1.000775"]
        assert "competent agency" in outcome["skipped"][0]["reason"]
        with gateway.db.unit_of_work() as session:
            created = get_procedure(session, "1.001612")
            updated = get_procedure(session, PROCEDURE)
        assert created is not None and updated is not None
        assert created.name == "Đăng ký thành lập hộ kinh doanh" and created.agencies == ["000.00.10.H38"]
        assert created.processing_days == 3
        assert [(f.code, f.amount) for f in created.fees] == [("LP1", 100000)]
        assert [(c.code, c.required, c.must_be_signed) for c in created.components] == [("TP1", True, False)]
        # The portal's name, time and fees; the province's agencies and components kept.
        assert updated.name == "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ"
        assert updated.agencies == [AGENCY, "000.00.10.H38"]
        assert [(c.code, c.name) for c in updated.components] == [("TP1", "Đơn đề nghị"), ("TP2", "Bản vẽ")]
        assert [(f.code, f.amount) for f in updated.fees] == [("LP1", 150000)]
        assert isinstance(updated.fees[0].amount, int)
        # Again: nothing changes.
        assert main(["procedure", "sync", "--config", str(gateway.config_path)]) == 0
        out = capsys.readouterr().out
        assert "0 created, 0 updated, 2 unchanged, 1 skipped" in out and "skipped 1.000775" in out
        assert sim.counters["catalogue_pulls"] == 2
    finally:
        close_gateway(gateway)


def test_procedure_sync_errors_are_one_line(
    tmp_path: Path, portal_server: ServerThread, sim: NationalPortalSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = write_config(tmp_path, url, portal_section(portal_server.base_url, tmp_path, password="sai-mat-khau"))
    capsys.readouterr()
    assert main(["procedure", "sync", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "login refused" in err and "sai-mat-khau" not in err
    sim.set_faults({"down_next": 5})
    path = write_config(tmp_path, url, portal_section(portal_server.base_url, tmp_path))
    assert main(["procedure", "sync", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "503" in err
