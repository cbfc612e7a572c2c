"""Satisfaction ratings (*đánh giá mức độ hài lòng*): the fixed criteria, the score scale and a rating's average.

After the result is handed over (``returned``) the applicant may rate the service once per dossier: a score from 1
to 5 for one or more of :data:`CRITERIA`, and an optional comment. The criteria follow the national evaluation of
public-service quality: access to the service, the procedure's transparency, the officials' conduct, the time taken
and the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["CRITERIA", "MAX_SCORE", "MIN_SCORE", "SCORE_LABELS_VI", "average", "problems"]

#: The criteria a rating may score, with their Vietnamese labels (the keys are what the API and the wire carry).
CRITERIA: Mapping[str, str] = MappingProxyType(
    {
        "access": "Tiếp cận dịch vụ",
        "procedure": "Thủ tục hành chính công khai, minh bạch",
        "staff": "Thái độ, kỹ năng của công chức giải quyết",
        "timeliness": "Thời gian giải quyết",
        "result": "Kết quả giải quyết",
    }
)

MIN_SCORE = 1
MAX_SCORE = 5

#: What each score means, as the citizen is asked.
SCORE_LABELS_VI: Mapping[int, str] = MappingProxyType(
    {1: "Rất không hài lòng", 2: "Không hài lòng", 3: "Bình thường", 4: "Hài lòng", 5: "Rất hài lòng"}
)


def problems(scores: Mapping[str, object]) -> list[tuple[str, str]]:
    """``(criterion, what is wrong)`` for every unknown criterion or score outside 1..5 (empty: valid)."""
    found: list[tuple[str, str]] = []
    if not scores:
        found.append(("", f"score at least one criterion ({', '.join(CRITERIA)})"))
    for criterion, score in scores.items():
        if criterion not in CRITERIA:
            found.append((criterion, f"unknown criterion (known: {', '.join(CRITERIA)})"))
        elif isinstance(score, bool) or not isinstance(score, int) or not MIN_SCORE <= score <= MAX_SCORE:
            found.append((criterion, f"the score must be a whole number from {MIN_SCORE} to {MAX_SCORE}"))
    return found


def average(scores: Mapping[str, int]) -> float:
    """The rating's mean score over the criteria it scores, to two decimals."""
    if not scores:
        raise ValueError("a rating scores at least one criterion")
    return round(sum(scores.values()) / len(scores), 2)
