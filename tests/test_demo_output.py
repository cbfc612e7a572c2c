"""``dvc-gateway demo``'s output: nothing cut at 80 columns or when piped, recorded text never read as markup."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from gateway.commands.demo_output import PIPED_WIDTH, WIDE_ENOUGH, demo_console, print_history

DOSSIER = {
    "code": "000.00.23.H38-261203-0002",
    "status": "returned",
    "national_status_code": 10,
    "history": [
        {"at": "2026-12-03T04:31:49+00:00", "status": "submitted", "actor": "portal"},
        {
            "at": "2026-12-03T04:31:51+00:00",
            "status": "completed",
            "step": "delivery_in_transit",
            "actor": "agency:000.00.23.H38",
            "note": "Postal delivery of the result EL000000002VN: in transit (Đang vận chuyển) [TP1] "
            "reference 000.00.23.H38-261203-0002-P1-a-very-long-unbroken-reference-that-exceeds-a-column",
        },
    ],
}


def render(width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, color_system=None)
    print_history(console, DOSSIER, lambda at: (at or "-")[:19].replace("T", " "))
    return out.getvalue()


def words_of(text: str) -> list[str]:
    """The words of ``text`` once table borders are taken out and folded lines joined back."""
    return re.sub(r"[│┃┏┓┗┛┡┩└┘┳┻╇━─┬┴┼╋]", " ", text).split()


@pytest.mark.parametrize("width", [60, 80, WIDE_ENOUGH, 160])
def test_the_history_fits_the_width_and_loses_nothing(width: int) -> None:
    printed = render(width)
    assert max(len(line) for line in printed.splitlines()) <= width
    assert "…" not in printed
    joined = "".join(words_of(printed))  # folded words come back whole when the pieces are joined
    for entry in DOSSIER["history"]:
        for value in (entry["at"][:10], entry["status"], entry["actor"], *str(entry.get("note", "")).split()):
            assert value in joined, (value, printed)
    assert "[TP1]" in printed  # recorded text is not console markup


def test_narrow_output_lists_one_entry_per_line_and_wide_output_is_a_table() -> None:
    narrow, wide = render(80), render(WIDE_ENOUGH)
    assert (
        "┃" not in narrow and "2026-12-03 04:31:51  completed · delivery_in_transit  by agency:000.00.23.H38" in narrow
    )
    assert "┃ time (Asia/Ho_Chi_Minh)" in wide


def test_piped_output_follows_columns_or_is_wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal
    monkeypatch.setenv("COLUMNS", "80")
    assert demo_console().width == 80
    monkeypatch.delenv("COLUMNS")
    assert demo_console().width == PIPED_WIDTH
