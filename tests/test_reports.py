"""The periodic report: periods, every figure rebuilt independently from the raw history, the API, the command line
(an xlsx workbook read back) and the daemon's monthly files (written once)."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from gateway.cli import main
from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar
from gateway.domain.reports import Period, scheduled_period
from gateway.services.report_files import COLUMNS
from gateway.services.report_schedule import write_due_reports_sync
from gateway.services.reports import build_report
from gateway.store.models import AuditEntry, Dossier, HistoryEntry, OutboxMessage
from tests.api_support import (
    ADMIN,
    AGENCY,
    AGENCY2,
    AGENCY2_AUTH,
    JOINT,
    PORTAL,
    PROCEDURE,
    Gateway,
    joint_submission,
    submission,
)

pytest_plugins = ("tests.api_fixtures",)

WAITING = {"supplement_requested", "fee_requested", "suspended"}
FINISHING = {"completed", "refused", "withdrawn"}
#: When the November report is made: after the month.
REPORT_TIME = datetime(2026, 12, 2, 9, 0, tzinfo=VIETNAM_TZ)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-10", date(2026, 10, 1), date(2026, 11, 1)),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1)),
        ("2026-Q4", date(2026, 10, 1), date(2027, 1, 1)),
        ("2026-Q1", date(2026, 1, 1), date(2026, 4, 1)),
        ("2026-H2", date(2026, 7, 1), date(2027, 1, 1)),
        ("2026", date(2026, 1, 1), date(2027, 1, 1)),
    ],
)
def test_periods(text: str, start: date, end: date) -> None:
    period = Period.parse(text)
    assert (period.start, period.end, period.label) == (start, end, text)


@pytest.mark.parametrize("text", ["2026-13", "2026-Q5", "2026-H3", "26-10", "2026/10", "", "1999"])
def test_bad_periods_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"period|month|year"):
        Period.parse(text)


def test_the_monthly_report_is_due_from_the_schedule_day_to_the_19th() -> None:
    assert scheduled_period(date(2026, 11, 14), 15) is None
    assert scheduled_period(date(2026, 11, 15), 15) == Period.parse("2026-10")
    assert scheduled_period(date(2026, 11, 19), 15) == Period.parse("2026-10")
    assert scheduled_period(date(2026, 11, 20), 15) is None
    assert scheduled_period(date(2027, 1, 3), 1) == Period.parse("2026-12")


async def _story(gw: Gateway) -> dict[str, str]:
    """A month of dossiers: one carried over from October, and in November every kind of outcome."""
    codes: dict[str, str] = {}
    gw.clock.set(datetime(2026, 10, 1, 9, 0, tzinfo=VIETNAM_TZ))
    codes["old"] = (await gw.submitted())["code"]
    assert (await gw.event(codes["old"], "received")).status_code == 200

    gw.clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=VIETNAM_TZ))
    codes["fast"] = (await gw.submitted())["code"]
    codes["twice"] = (await gw.submitted(submission(channel="in_person")))["code"]
    codes["refused"] = (await gw.submitted(submission(channel="post")))["code"]
    codes["withdrawn"] = (await gw.submitted())["code"]
    codes["joint"] = (await gw.submitted(joint_submission()))["code"]

    async def move(code: str, status: str, **fields: Any) -> None:
        gw.clock.advance(minutes=10)
        response = await gw.event(code, status, **fields)
        assert response.status_code == 200, response.text

    await move(codes["fast"], "received")
    await move(codes["fast"], "processing")
    await move(codes["fast"], "completed")
    await move(codes["twice"], "received")
    for _ in range(2):
        await move(codes["twice"], "supplement_requested", reason="Thiếu bản vẽ thiết kế", components=["TP2"])
        await move(codes["twice"], "received")
    await move(codes["twice"], "completed")
    await move(codes["refused"], "refused", reason="Không thuộc thẩm quyền")
    gw.clock.advance(minutes=10)
    response = await gw.client.post(
        f"/api/v1/dossiers/{codes['withdrawn']}/withdraw", json={"reason": "Không cần nữa"}, headers=PORTAL
    )
    assert response.status_code == 200, response.text
    await move(codes["joint"], "received")
    await move(codes["joint"], "processing", transfer_to=AGENCY2)
    gw.clock.advance(minutes=10)
    assert (await gw.event(codes["joint"], "processing", token=AGENCY2_AUTH, agency=AGENCY2)).status_code == 200
    with gw.db.unit_of_work() as session:  # as if its components had all been validly signed
        session.execute(update(Dossier).where(Dossier.code == codes["fast"]).values(originals_check_required=False))
    return codes


def _waited(calendar: OfficeCalendar, history: list[HistoryEntry], start: datetime, end: datetime) -> timedelta:
    waited, since = timedelta(0), None
    for entry in history:
        if entry.at > end:
            break
        if entry.status in WAITING and since is None:
            since = entry.at
        elif entry.status not in WAITING and since is not None:
            waited += calendar.working_time_between(max(since, start), entry.at)
            since = None
    return waited


def _rebuild(gw: Gateway, period: Period, until: datetime) -> dict[tuple[str, str], dict[str, Any]]:
    """Every figure of the report, counted again from the stored dossiers and their history rows."""
    calendar = gw.runtime.calendar
    start, end = period.start_at, period.end_at
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(agency: str, procedure: str) -> dict[str, Any]:
        return rows.setdefault(
            (agency, procedure),
            {"received": Counter(), "refusal_reasons": Counter(), "supplement_reasons": Counter(), "days": []}
            | dict.fromkeys(
                (
                    "transferred_in carried_over completed_on_time completed_late in_progress_on_time "
                    "in_progress_overdue refused supplement_requests withdrawn repeated_supplements originals_exempt"
                ).split(),
                0,
            ),
        )

    with gw.db.unit_of_work() as session:
        for dossier in session.scalars(select(Dossier)):
            history = sorted(dossier.history, key=lambda e: e.id)
            arrived = history[0].at
            final = next((e for e in history if e.status in FINISHING), None)
            lead = row(dossier.lead_agency_code, dossier.procedure_code)
            if start <= arrived < end:
                lead["received"][dossier.channel] += 1
                lead["originals_exempt"] += not dossier.originals_check_required
            if arrived < start and (final is None or final.at >= start):
                lead["carried_over"] += 1
            requests = [
                e
                for before, e in zip([None, *history], history, strict=False)
                if e.status == "supplement_requested" and (before is None or before.status != e.status)
            ]
            if final is not None and start <= final.at < end:
                if final.status == "completed":
                    late = dossier.completed_at > dossier.due_at or len(requests) > 1
                    lead["completed_late" if late else "completed_on_time"] += 1
                    begin = dossier.received_at
                    waited = _waited(calendar, history, begin, final.at)
                    worked = calendar.working_time_between(begin, final.at) - waited
                    lead["days"].append(worked / timedelta(hours=8))
                else:
                    lead[final.status] += 1
                    if final.status == "refused":
                        lead["refusal_reasons"][final.details["reason"]] += 1
            in_period = [e for e in requests if start <= e.at < end]
            lead["supplement_requests"] += len(in_period)
            lead["supplement_reasons"].update(e.details["reason"] for e in in_period)
            lead["repeated_supplements"] += bool(in_period) and requests[0] is not in_period[-1]
            if arrived < until and (final is None or final.at >= until):
                lead["in_progress_overdue" if until > dossier.due_at else "in_progress_on_time"] += 1
            for entry in history:
                target = (entry.details or {}).get("transfer_to")
                if target and start <= entry.at < end:
                    row(target, dossier.procedure_code)["transferred_in"] += 1
    return rows


def _figures(found: dict[str, Any]) -> dict[str, Any]:
    """A report row in the rebuild's shape."""
    reasons = {
        key: Counter({item["reason"]: item["count"] for item in found[key]})
        for key in ("refusal_reasons", "supplement_reasons")
    }
    return {
        "received": Counter({k: v for k, v in found["received"].items() if k != "total" and v}),
        "transferred_in": found["transferred_in"],
        "carried_over": found["carried_over"],
        "completed_on_time": found["completed"]["on_time"],
        "completed_late": found["completed"]["late"],
        "in_progress_on_time": found["in_progress"]["on_time"],
        "in_progress_overdue": found["in_progress"]["overdue"],
        "refused": found["refused"],
        "withdrawn": found["withdrawn"],
        "supplement_requests": found["supplement_requests"],
        "repeated_supplements": found["repeated_supplements"],
        "originals_exempt": found["originals_exempt"],
        **reasons,
    }


async def test_every_figure_is_rebuilt_from_the_history(any_gw: Gateway) -> None:
    gw = any_gw
    codes = await _story(gw)
    gw.clock.set(REPORT_TIME)
    response = await gw.client.get("/api/v1/reports", params={"period": "2026-11"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["period"], document["from"], document["to"]) == ("2026-11", "2026-11-01", "2026-11-30")

    period = Period.parse("2026-11")
    expected = _rebuild(gw, period, period.end_at)
    found = {(r["agency_code"], r["procedure_code"]): r for r in document["rows"]}
    assert set(found) == {key for key, figures in expected.items() if any(figures[k] for k in figures if k != "days")}
    for key, row in found.items():
        rebuilt = expected[key]
        days = rebuilt.pop("days")
        assert _figures(row) == {k: v for k, v in rebuilt.items()}, key
        average = round(sum(days) / len(days), 2) if days else None
        assert row["average_processing_days"] == average

    # The story, as a clerk would count it.
    main_row = found[(AGENCY, PROCEDURE)]
    assert main_row["received"] == {"online": 2, "in_person": 1, "post": 1, "total": 4}
    assert main_row["carried_over"] == 1
    assert main_row["completed"] == {"on_time": 1, "late": 1, "total": 2}
    assert main_row["in_progress"] == {"on_time": 0, "overdue": 1, "total": 1}
    assert (main_row["refused"], main_row["withdrawn"]) == (1, 1)
    assert main_row["refusal_reasons"] == [{"reason": "Không thuộc thẩm quyền", "count": 1}]
    assert main_row["supplement_requests"] == 2 and main_row["repeated_supplements"] == 1
    assert main_row["supplement_reasons"] == [{"reason": "Thiếu bản vẽ thiết kế", "count": 2}]
    assert main_row["originals_exempt"] == 1 and main_row["originals_exempt_share"] == 0.25
    assert found[(AGENCY, JOINT)]["received"]["total"] == 1
    assert found[(AGENCY, JOINT)]["in_progress"]["on_time"] == 1
    assert found[(AGENCY2, JOINT)]["transferred_in"] == 1 and found[(AGENCY2, JOINT)]["received"]["total"] == 0
    assert document["total"]["received"]["total"] == 5
    assert codes["old"] not in json.dumps(document)  # figures, never dossiers

    # October: the old dossier arrived then; a quarter adds up its months.
    october = (await gw.client.get("/api/v1/reports", params={"period": "2026-10"}, headers=ADMIN)).json()
    assert october["total"]["received"]["total"] == 1 and october["total"]["in_progress"]["overdue"] == 1
    quarter = (await gw.client.get("/api/v1/reports", params={"period": "2026-Q4"}, headers=ADMIN)).json()
    assert quarter["total"]["received"]["total"] == 6
    assert quarter["total"]["carried_over"] == 0


async def test_the_api_refuses_a_bad_period_and_other_roles(gw: Gateway) -> None:
    response = await gw.client.get("/api/v1/reports", params={"period": "2026-13"}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "period"
    assert (await gw.client.get("/api/v1/reports", params={"period": "2026-11"}, headers=PORTAL)).status_code == 403
    assert (await gw.client.get("/api/v1/reports", params={"period": "2026-11"})).status_code == 401


async def test_csv_and_xlsx_from_the_api_have_vietnamese_headings(gw: Gateway) -> None:
    await _story(gw)
    params = {"period": "2026-11", "agency": AGENCY, "format": "csv"}
    response = await gw.client.get("/api/v1/reports", params=params, headers=ADMIN)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.content.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:3] == ["Mã cơ quan", "Cơ quan", "Mã thủ tục"]
    assert all(line.startswith(AGENCY) or line.startswith("Toàn tỉnh") for line in lines[1:])
    params["format"] = "xlsx"
    response = await gw.client.get("/api/v1/reports", params=params, headers=ADMIN)
    assert response.status_code == 200
    assert f"bao-cao-2026-11-{AGENCY}.xlsx" in response.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(response.content))["Báo cáo"]
    assert [c.value for c in sheet[4]] == [heading for _, heading in COLUMNS]


def _config(gw: Gateway, tmp_path: Path, **reports: Any) -> Path:
    path = tmp_path / "gateway.toml"
    lines = [f'[database]\nurl = "{gw.runtime.settings.database.url}"\n']
    if reports:
        lines.append("[reports]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in reports.items()))
    path.write_text("".join(lines), encoding="utf-8")
    return path


async def test_the_command_writes_a_workbook_with_the_reports_figures(
    gw: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _story(gw)
    config = _config(gw, tmp_path)
    output = tmp_path / "bao-cao.xlsx"
    args = ["report", "--period", "2026-11", "--format", "xlsx", "--output", str(output), "--config", str(config)]
    assert main(args) == 0
    assert main(["report", "--period", "2026-11", "--format", "json", "--config", str(config)]) == 0
    document = json.loads(capsys.readouterr().out)
    sheet = load_workbook(output)["Báo cáo"]
    headings = [c.value for c in sheet[4]]
    table = [dict(zip(headings, (c.value for c in row), strict=True)) for row in sheet.iter_rows(min_row=5)]
    by_key = {(r["Mã cơ quan"], r["Mã thủ tục"]): r for r in table}
    for row in document["rows"]:
        cells = by_key[(row["agency_code"], row["procedure_code"])]
        assert cells["Tổng số tiếp nhận mới"] == row["received"]["total"]
        assert cells["Tiếp nhận trực tiếp"] == row["received"]["in_person"]
        assert cells["Đã giải quyết quá hạn"] == row["completed"]["late"]
        assert cells["Đang giải quyết quá hạn"] == row["in_progress"]["overdue"]
        assert cells["Yêu cầu bổ sung nhiều lần"] == row["repeated_supplements"]
    assert by_key[("Toàn tỉnh", "Tổng cộng")]["Tổng số tiếp nhận mới"] == document["total"]["received"]["total"]

    assert main(["report", "--period", "2026-14", "--config", str(config)]) == 2
    assert "2026-14" in capsys.readouterr().err
    assert main(["report", "--period", "2026-11", "--format", "xlsx", "--config", str(config)]) == 2
    assert main(["report", "--period", "2026-11", "--config", str(config)]) == 0
    assert "Kỳ báo cáo 2026-11" in capsys.readouterr().out


async def test_the_daemon_writes_last_months_reports_once(gw: Gateway, tmp_path: Path) -> None:
    await _story(gw)
    calendar, directory = gw.runtime.calendar, tmp_path / "reports"

    def write(day: int) -> list[str]:
        now = datetime(2026, 12, day, 9, 0, tzinfo=VIETNAM_TZ)
        return write_due_reports_sync(gw.db, calendar, schedule_day=15, directory=directory, now=now)

    assert write(14) == [] and not directory.exists()
    written = write(15)
    assert sorted(written) == sorted(["000.00.10.H38", AGENCY, AGENCY2])
    assert write(16) == []  # done: recorded in the database, whatever process asks
    assert write(20) == []
    document = json.loads((directory / "2026-11" / f"bao-cao-2026-11-{AGENCY}.json").read_text(encoding="utf-8"))
    with gw.db.unit_of_work() as session:
        expected = build_report(session, Period.parse("2026-11"), calendar, now=REPORT_TIME, agency=AGENCY).to_json()
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "report.written")).all()
    assert document["rows"] == expected["rows"]
    assert (directory / "2026-11" / f"bao-cao-2026-11-{AGENCY}.xlsx").stat().st_size > 0
    assert sorted(e.subject for e in entries) == sorted(f"2026-11/{code}" for code in written)


async def test_system_figures_come_from_the_outbox(gw: Gateway) -> None:
    await gw.submitted()
    await gw.submitted()
    november = datetime(2026, 11, 24, 9, 0, tzinfo=VIETNAM_TZ)
    with gw.db.unit_of_work() as session:
        first, second = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()[:2]
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == first.id).values(state="done", attempts=3, done_at=november)
        )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == second.id)
            .values(state="dead", attempts=8, updated_at=november)
        )
        system = build_report(session, Period.parse("2026-11"), gw.runtime.calendar, now=REPORT_TIME).to_json()[
            "system"
        ]
        october = build_report(session, Period.parse("2026-10"), gw.runtime.calendar, now=REPORT_TIME).to_json()
    assert (system["deliveries"], system["retries"], system["dead_letters"]) == (1, 9, 1)
    assert system["by_target"] == [{"target": AGENCY, "deliveries": 1, "retries": 9, "dead_letters": 1}]
    assert system["upstream_availability"] is None
    assert october["system"]["by_target"] == []
