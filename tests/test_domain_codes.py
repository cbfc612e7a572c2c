"""Dossier codes: <agency code>-<yymmdd>-<4-digit daily sequence>."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.codes import (
    DossierCode,
    format_dossier_code,
    is_valid_agency_code,
    parse_dossier_code,
)


def test_design_example_parses() -> None:
    parsed = parse_dossier_code("000.00.23.H38-261122-0001")
    assert parsed == ("000.00.23.H38", date(2026, 11, 22), 1)
    assert parsed == DossierCode(agency_code="000.00.23.H38", day=date(2026, 11, 22), sequence=1)
    assert str(parsed) == "000.00.23.H38-261122-0001"


def test_format() -> None:
    assert format_dossier_code("000.00.23.H38", date(2026, 11, 22), 1) == "000.00.23.H38-261122-0001"
    assert format_dossier_code("G22.103", date(2026, 1, 5), 42) == "G22.103-260105-0042"
    assert format_dossier_code("H38.12", date(2030, 12, 31), 9999) == "H38.12-301231-9999"


def test_day_of_an_aware_datetime_is_taken_in_vietnam() -> None:
    # 2026-11-21 18:00 UTC is already 2026-11-22 01:00 in Asia/Ho_Chi_Minh
    assert format_dossier_code("H38", datetime(2026, 11, 21, 18, 0, tzinfo=UTC), 7) == "H38-261122-0007"
    assert format_dossier_code("H38", datetime(2026, 11, 21, 16, 59, tzinfo=UTC), 7) == "H38-261121-0007"
    with pytest.raises(ValueError, match="naive"):
        format_dossier_code("H38", datetime(2026, 11, 21, 18, 0), 7)


@pytest.mark.parametrize("sequence", [0, -1, 10000, True, 1.0, "1"])
def test_sequence_out_of_range(sequence: object) -> None:
    with pytest.raises(ValueError, match="daily sequence must be an integer from 1 to 9999"):
        format_dossier_code("H38", date(2026, 1, 1), sequence)  # type: ignore[arg-type]


@pytest.mark.parametrize("day", [date(1999, 12, 31), date(2100, 1, 1)])
def test_years_outside_the_two_digit_century(day: date) -> None:
    with pytest.raises(ValueError, match="2000–2099"):
        format_dossier_code("H38", day, 1)


@pytest.mark.parametrize("agency", ["000.00.23.H38", "G22.103", "H38.12", "AB", "h38", "A" * 40, "1.2"])
def test_valid_agency_codes(agency: str) -> None:
    assert is_valid_agency_code(agency)
    assert parse_dossier_code(format_dossier_code(agency, date(2026, 2, 13), 3)).agency_code == agency


@pytest.mark.parametrize(
    "agency",
    ["", "A", "A" * 41, ".H38", "H38.", "H38..12", "H 38", "H38-12", "Hà38", "H38/12", "H38\n", None, 38],
)
def test_invalid_agency_codes(agency: object) -> None:
    assert not is_valid_agency_code(agency)
    with pytest.raises(ValueError, match="invalid agency code"):
        format_dossier_code(agency, date(2026, 1, 1), 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "code",
    [
        "",
        "000.00.23.H38",
        "000.00.23.H38-261122",
        "000.00.23.H38-261122-001",
        "000.00.23.H38-261122-00001",
        "000.00.23.H38-26112-0001",
        "000.00.23.H38-261322-0001",  # month 13
        "000.00.23.H38-260230-0001",  # 30 February
        "000.00.23.H38-261122-0000",  # sequences start at 1
        "000.00.23.H38_261122_0001",
        "-261122-0001",
        ".H38-261122-0001",
        "H38..1-261122-0001",
        "H38-２６1122-0001",  # non-ASCII digits
        "H38-261122-0001\n",
        " H38-261122-0001",
        "H38-261122-0001-0002",
        None,
    ],
)
def test_bad_codes_are_refused(code: object) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_dossier_code(code)  # type: ignore[arg-type]


_agency = st.from_regex(r"\A[A-Za-z0-9]{1,8}(\.[A-Za-z0-9]{1,8}){0,3}\Z").filter(lambda s: 2 <= len(s) <= 40)


@given(agency=_agency, day=st.dates(date(2000, 1, 1), date(2099, 12, 31)), sequence=st.integers(1, 9999))
def test_round_trip(agency: str, day: date, sequence: int) -> None:
    code = format_dossier_code(agency, day, sequence)
    assert parse_dossier_code(code) == (agency, day, sequence)
    assert len(code) == len(agency) + 12
