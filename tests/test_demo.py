"""``dvc-gateway demo`` runs the whole walk-through by itself and ends with exit code 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CODE_RE = re.compile(r"000\.00\.23\.H38-\d{6}-\d{4}")


def test_demo_walks_two_dossiers_through_their_journey(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo"],
        cwd=tmp_path,  # it must not depend on (or write to) the working directory
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    codes = set(CODE_RE.findall(out.replace("-P1", "")))
    assert len(codes) == 2
    for code in codes:
        assert f"Dossier {code}" in out
    assert "valid" in out
    assert "unsigned" in out
    for status in ("submitted", "received", "processing", "completed", "supplement_requested"):
        assert status in out
    assert "originals check: not required" in out
    assert "originals check: required" in out
    assert "due " in out
    # The signed dossier's fee is paid online and its result goes by post, the national portal following each step.
    for step in ("fee_requested", "fee_paid", "shipped", "delivery_delivered", "returned (national code 10)"):
        assert step in out
    assert re.search(r"payment 000\.00\.23\.H38-\d{6}-\d{4}-P1: 150,000 VND, paid", out)
    assert re.search(r"postal delivery order \S+: delivered", out)
    assert re.search(r"postal pickup order \S+: accepted", out)
    assert "TrangThaiHoSo 10, as here" in out.replace("\n", " ")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
