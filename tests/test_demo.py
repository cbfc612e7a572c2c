"""``dvc-gateway demo`` runs the whole walk-through by itself and ends with exit code 0, on its packaged samples."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gateway.commands.demo_story import DEMO_DATA, SAMPLE_FILES

ROOT = Path(__file__).resolve().parent.parent
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
    # The applicant looks the dossier up by SMS; a second agency's fees go through the national payment platform.
    assert re.search(r"SMS 'TRACUU 000\.00\.23\.H38-\d{6}-\d{4}' answered: HS ", out)
    assert "paid through the national payment platform" in out and "the gateway answered MaLoi 00)" in out
    # The applicant rates the returned dossier; a citizen's question is answered by the agency, relayed to the portal.
    flat = " ".join(out.split())
    assert re.search(r"rated 4\.6 / 5 by the applicant \(national portal, DanhGiaHaiLongMC: DiemTrungBinh 4\.6\)", flat)
    assert "delivered to the agency's system" in flat and "at the portal: Có, cần giấy phép xây dựng." in flat
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_packaged_samples_are_the_examples_byte_for_byte() -> None:
    """``gateway/demo_data`` holds exactly the sample files the demo reads, each the same as in ``examples/``."""
    assert DEMO_DATA == ROOT / "gateway" / "demo_data"
    packaged = {
        path.relative_to(DEMO_DATA).as_posix()
        for path in DEMO_DATA.rglob("*")
        if path.is_file() and path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    assert packaged == set(SAMPLE_FILES)
    for name in SAMPLE_FILES:
        assert (DEMO_DATA / name).read_bytes() == (ROOT / "examples" / name).read_bytes(), (
            f"gateway/demo_data/{name} differs from examples/{name}: copy it (examples/generate.py copies them all)"
        )
