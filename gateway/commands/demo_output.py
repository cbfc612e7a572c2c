"""How ``dvc-gateway demo`` prints: a console as wide as the terminal (or ``COLUMNS``, or 120 columns when piped), and
each dossier's history as a table where its columns fit side by side, one entry per line where they do not.

Nothing is ever cut: table cells wrap (long words are folded, not ended with "…"), and what the gateway recorded
(notes, actors) is printed as text, never read as console markup, so ``[bracketed]`` words stay.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

__all__ = ["WIDE_ENOUGH", "demo_console", "print_history"]

#: From this width the history table's four columns fit without squeezing the note; below, one entry per line.
WIDE_ENOUGH = 110
#: Width of piped output when ``COLUMNS`` does not say.
PIPED_WIDTH = 120


def demo_console() -> Console:
    """The terminal's width; piped, ``COLUMNS`` when set, else :data:`PIPED_WIDTH`."""
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console = Console(highlight=False, width=PIPED_WIDTH)
    return console


def print_history(console: Console, dossier: dict[str, Any], time_of: Callable[[str | None], str]) -> None:
    """The dossier's title line and its history (time in Vietnam, status · step, who, note)."""
    title = (
        f"Dossier {dossier.get('code')}: {dossier.get('status')} (national code {dossier.get('national_status_code')})"
    )
    entries = [
        (
            time_of(entry.get("at")),
            str(entry.get("status", "")) + (f" · {entry['step']}" if entry.get("step") else ""),
            str(entry.get("actor", "")),
            str(entry.get("note") or ""),
        )
        for entry in dossier.get("history", [])
    ]
    if console.width >= WIDE_ENOUGH:
        table = Table(title=Text(title), title_justify="left")
        table.add_column("time (Asia/Ho_Chi_Minh)", no_wrap=True)
        table.add_column("status", overflow="fold")
        table.add_column("by", overflow="fold")
        table.add_column("note", overflow="fold", ratio=1)
        for cells in entries:
            table.add_row(*(Text(cell) for cell in cells))
        console.print(table)
        return
    console.print(Text(f"{title}, times in Asia/Ho_Chi_Minh:"))
    for at, what, actor, note in entries:
        console.print(Padding(Text(f"{at}  {what}  by {actor}", overflow="fold"), (0, 0, 0, 2), expand=False))
        if note:
            console.print(Padding(Text(note, overflow="fold"), (0, 0, 0, 6), expand=False))
