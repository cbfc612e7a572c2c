"""The base of every answer model: open to properties it does not name (read models grow)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Answer"]


class Answer(BaseModel):
    """An answer body; properties not named here may be present too."""

    model_config = ConfigDict(extra="allow")
