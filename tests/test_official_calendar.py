"""The official calendar on real dates: the Government's days off and day swaps of 2025 and 2026 over the ``holidays``
package, the settings over both, the calendar's version, and the ``calendar`` command."""

from __future__ import annotations

import json
import tomllib
from datetime import date, datetime, time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gateway.cli import main
from gateway.domain.calendar import VIETNAM_TZ, OfficeCalendar, holidays_version
from gateway.official_calendar import OfficialDataError, load_official_calendar, parse_official_calendar
from gateway.sections import CalendarSection, office_calendar

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = office_calendar(CalendarSection())  # the calendar of the default settings
PACKAGE_ONLY = OfficeCalendar()


def vn(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=VIETNAM_TZ)


def test_31_december_2025_with_one_working_day_is_due_on_5_january_2026() -> None:
    received = vn(2025, 12, 31, 10)
    assert DEFAULT.due_at(received, 1) == vn(2026, 1, 5, 17)  # 1 January a holiday, 2 January swapped off
    assert DEFAULT.acknowledge_by(received) == vn(2025, 12, 31, 17)
    # Five working days: 5–9 January; the sixth is the make-up Saturday 10 January.
    assert DEFAULT.due_at(received, 5) == vn(2026, 1, 9, 17)
    assert DEFAULT.due_at(received, 6) == vn(2026, 1, 10, 17)
    # The package alone misses the swap: it would make 2 January (a day off) the due date.
    assert PACKAGE_ONLY.due_at(received, 1) == vn(2026, 1, 2, 17)


def test_the_make_up_saturday_has_office_sessions() -> None:
    saturday = date(2026, 1, 10)
    assert DEFAULT.is_working_day(saturday) and not DEFAULT.is_working_day(date(2026, 1, 2))
    assert DEFAULT.sessions(saturday) == [
        (vn(2026, 1, 10, 7), vn(2026, 1, 10, 11, 30)),
        (vn(2026, 1, 10, 13, 30), vn(2026, 1, 10, 17)),
    ]
    assert DEFAULT.acknowledge_by(vn(2026, 1, 9, 16)) == vn(2026, 1, 10, 11, 30)  # half a day: Saturday morning
    assert DEFAULT.due_at(vn(2026, 1, 9, 9), 1) == vn(2026, 1, 10, 17)
    assert DEFAULT.due_at(vn(2025, 4, 25, 10), 1) == vn(2025, 4, 26, 17)  # Saturday 26 April 2025, worked for 2 May


def test_tet_2026() -> None:
    assert DEFAULT.due_at(vn(2026, 2, 13, 10), 1) == vn(2026, 2, 23, 17)  # Friday before Tết → Monday after
    assert DEFAULT.acknowledge_by(vn(2026, 2, 13, 15)) == vn(2026, 2, 23, 11, 30)
    assert not any(DEFAULT.is_working_day(date(2026, 2, d)) for d in range(14, 23))


@pytest.mark.parametrize(
    ("received", "days", "due"),
    [
        (vn(2026, 4, 29, 10), 1, vn(2026, 5, 4, 17)),  # 30/4 Thursday, 1/5 Friday
        (vn(2025, 4, 29, 10), 1, vn(2025, 5, 5, 17)),  # 30/4, 1/5 and the swapped 2/5/2025
        (vn(2025, 4, 29, 10), 2, vn(2025, 5, 6, 17)),
        (vn(2026, 8, 28, 10), 1, vn(2026, 9, 3, 17)),  # 31/8 swapped, 1/9 the decided extra day, 2/9
        (vn(2025, 8, 29, 10), 1, vn(2025, 9, 3, 17)),  # 1/9/2025 the decided extra day, 2/9
        (vn(2026, 11, 23, 10), 1, vn(2026, 11, 25, 17)),  # Ngày Văn hóa Việt Nam, 24/11
    ],
)
def test_holidays_and_their_decided_extra_days(received: datetime, days: int, due: datetime) -> None:
    assert DEFAULT.due_at(received, days) == due


def test_settings_come_before_the_official_data() -> None:
    configured = office_calendar(
        CalendarSection.model_validate({"makeup_working_days": ["2026-01-02"], "extra_holidays": ["2026-01-10"]})
    )
    assert configured.is_working_day(date(2026, 1, 2)) and not configured.is_working_day(date(2026, 1, 10))
    assert configured.rule(date(2026, 1, 2)).source == "settings"
    assert DEFAULT.rule(date(2026, 1, 2)) == (
        date(2026, 1, 2),
        False,
        "Nghỉ hoán đổi (làm bù thứ Bảy 10/1/2026)",
        "official",
    )


def test_the_version_names_the_data_the_package_and_the_settings() -> None:
    assert DEFAULT.version == f"vn-2026.1+holidays-{holidays_version()}"
    assert PACKAGE_ONLY.version == f"holidays-{holidays_version()}"
    moved = office_calendar(CalendarSection.model_validate({"morning": "07:30-11:30"}))
    assert moved.version.startswith(f"vn-2026.1+holidays-{holidays_version()}+settings-") and moved != DEFAULT
    assert moved.version != office_calendar(CalendarSection.model_validate({"morning": "08:00-11:30"})).version


def test_2027_is_provisional_and_follows_the_package_estimate() -> None:
    assert [DEFAULT.year_status(y) for y in (2025, 2026, 2027, 2028)] == [
        "decided",
        "decided",
        "provisional",
        "package",
    ]
    assert not DEFAULT.is_working_day(date(2027, 2, 8))  # Tết 2027 as the package estimates it
    assert DEFAULT.rule(date(2027, 2, 8)).source == "holidays"
    assert DEFAULT.rule(date(2027, 1, 1)).source == "official"


def test_the_holidays_package_is_pinned_to_the_installed_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [pin] = [Requirement(r) for r in project["dependencies"] if r.startswith("holidays")]
    assert pin.specifier and "<" in str(pin.specifier)  # an upper bound: a release cannot move due dates silently
    assert pin.specifier.contains(holidays_version())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("2026-01-02", "2026-01-03"), "2026-01-03 is a weekend day"),
        (('"working_days": [', '"working_days": [{"date": "2026-01-10", "name": "x"}, '), "2026-01-10 not in 2025"),
        (('"status": "provisional"', '"status": "maybe"'), "years.2027.status"),
        (('"version": "2026.1"', '"version": "latest"'), "version"),
    ],
)
def test_bad_official_data_is_refused_in_one_line(change: tuple[str, str], message: str) -> None:
    text = (ROOT / "gateway" / "official_calendar" / "vn.json").read_text(encoding="utf-8")
    assert parse_official_calendar(text) == load_official_calendar()
    broken = text.replace(*change, 1)
    with pytest.raises(OfficialDataError, match=message.replace(".", r"\.")) as info:
        parse_official_calendar(broken)
    assert "\n" not in str(info.value)


# -- the command ----------------------------------------------------------------------------------------------------


def test_calendar_show_lists_the_2026_swaps(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["calendar", "show", "--year", "2026", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["year_status"] == "decided" and shown["calendar_version"] == DEFAULT.version
    off = {day["date"]: day for day in shown["days_off"]}
    worked = {day["date"]: day for day in shown["working_days"]}
    assert off["2026-01-02"] == {
        "date": "2026-01-02",
        "weekday": "Friday",
        "name": "Nghỉ hoán đổi (làm bù thứ Bảy 10/1/2026)",
        "source": "official:vn-2026.1",
    }
    assert list(worked) == ["2026-01-10", "2026-08-22"]
    assert {"2026-02-16", "2026-02-20", "2026-04-27", "2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"} <= set(
        off
    )
    assert shown["sessions"] == {"morning": "07:00-11:30", "afternoon": "13:30-17:00", "source": "default"}

    config = tmp_path / "gateway.toml"
    config.write_text('[calendar]\nextra_holidays = ["2026-12-31"]\n', encoding="utf-8")
    assert main(["calendar", "show", "--year", "2026", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "2026 is decided" in out and "2026-01-10" in out and "2026-12-31" in out and "settings" in out


def test_calendar_due(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calendar", "due", "--at", "2025-12-31T10:00", "--days", "1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {
        "received_at": "2025-12-31T10:00:00+07:00",
        "counts_from": "2025-12-31T10:00:00+07:00",
        "acknowledge_by": "2025-12-31T17:00:00+07:00",
        "processing_days": 1,
        "due_at": "2026-01-05T17:00:00+07:00",
        "calendar_version": DEFAULT.version,
        "not_decided": [],
    }
    assert main(["calendar", "due", "--at", "2026-12-31T03:00:00Z", "--days", "5"]) == 0
    captured = capsys.readouterr()
    assert "due at          2027-01-08T17:00:00+07:00 (Friday, 5 working days)" in captured.out
    assert "2027 are not decided yet" in captured.err


@pytest.mark.parametrize("argv", [["--at", "31/12/2025", "--days", "1"], ["--at", "2025-12-31T10:00", "--days", "-1"]])
def test_calendar_due_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(["calendar", "due", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dvc-gateway: error: --") and err.count("\n") == 1


def test_sessions_keep_their_meaning_on_a_make_up_day() -> None:
    assert DEFAULT.sessions(date(2026, 8, 22))[0][0].time() == time(7, 0)


def _newer_data(tmp_path: Path, version: str) -> Path:
    """The shipped data with 2027 decided: Monday 4 January 2027 off, under ``version``."""
    data = json.loads((ROOT / "gateway" / "official_calendar" / "vn.json").read_text(encoding="utf-8"))
    data["version"] = version
    data["years"]["2027"] = {
        "status": "decided",
        "decided_by": "Thông báo nghỉ Tết Dương lịch 2027",
        "days_off": [{"date": "2027-01-01", "name": "Tết Dương lịch"}, {"date": "2027-01-04", "name": "Nghỉ bù"}],
        "working_days": [],
    }
    path = tmp_path / "calendar" / "vn-newer.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_a_newer_official_data_file_replaces_the_shipped_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _newer_data(tmp_path, "2026.2")
    config = tmp_path / "gateway.toml"
    config.write_text('[calendar]\nofficial_data = "calendar/vn-newer.json"\n', encoding="utf-8")
    assert main(["calendar", "show", "--year", "2027", "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["year_status"] == "decided"
    assert shown["calendar_version"].startswith("vn-2026.2+")
    assert {"date": "2027-01-04", "weekday": "Monday", "name": "Nghỉ bù", "source": "official:vn-2026.2"} in shown[
        "days_off"
    ]
    assert main(["calendar", "due", "--at", "2026-12-31T10:00", "--days", "1", "--config", str(config)]) == 0
    assert "2027-01-05" in capsys.readouterr().out  # 1 and 4 January off, 2–3 January a weekend


@pytest.mark.parametrize(
    ("version", "write", "message"),
    [
        ("2025.9", True, "version 2025.9 is older than the shipped data's 2026.1"),
        ("2026.2", False, "cannot read"),
    ],
)
def test_unusable_official_data_is_refused_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, version: str, write: bool, message: str
) -> None:
    path = _newer_data(tmp_path, version)
    if not write:
        path.unlink()
    config = tmp_path / "gateway.toml"
    config.write_text(f'[calendar]\nofficial_data = "{path.as_posix()}"\n', encoding="utf-8")
    assert main(["calendar", "show", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "official_data" in err and message in err and err.count("\n") == 1
