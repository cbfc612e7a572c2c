"""The periodic report (``GET /api/v1/reports``, JSON form); the counting rules are in ``docs/counting-rules.md``."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import Field

from .base import Answer

__all__ = ["PeriodicReport"]


class PeriodicReport(Answer):
    """Figures per agency and procedure, per agency and in total, for one period."""

    period: str = Field(examples=["2026-Q4"])
    kind: str = Field(description="month, quarter, half or year")
    from_: date = Field(alias="from")
    to: date
    generated_at: datetime | None
    agency: str | None
    procedure: str | None
    rows: list[dict[str, Any]] = Field(description="one per agency and procedure: codes, names and figures")
    agencies: list[dict[str, Any]] = Field(description="one per agency: code, name and figures")
    total: dict[str, Any]
    system: dict[str, Any]
    left_out: list[str]
