"""``dvc-gateway demo`` from the built wheel: installed apart from the source tree and run in an empty folder.

The wheel is built by pip from the project's sources (copied to a temporary folder first, so that no build artefact of
the working tree gets in and none is left behind), installed with ``pip install --no-deps --target`` into another
temporary folder, and run from a third, empty one with only that folder and this environment's dependencies on the
path: the demo must find its sample catalogue, documents and trust material in the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What pip prints when it cannot reach an index to fetch the build backend.
OFFLINE_SIGNS = (
    "Could not find a version",
    "No matching distribution",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "Read timed out",
)
#: Run in the child: check that the gateway comes from the installed wheel, not the source tree; then run the demo.
PROBE = """
import runpy, sys
from importlib.resources import files
from pathlib import Path

site, root = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
if any(entry and Path(entry).resolve() == root for entry in sys.path):
    sys.exit(f"the source tree {root} is on sys.path")
import adapters, gateway, signing
for module in (gateway, adapters, signing):
    if not Path(module.__file__).resolve().is_relative_to(site):
        sys.exit(f"{module.__name__} imported from {module.__file__}, not from the installed wheel")
data = Path(str(files("gateway.demo_data"))).resolve()
if not data.is_relative_to(site):
    sys.exit(f"the demo's sample files are read from {data}, not from the installed wheel")
print(f"gateway from {gateway.__file__}", file=sys.stderr)
sys.argv = ["dvc-gateway", "demo"]
runpy.run_module("gateway", run_name="__main__", alter_sys=True)
"""


def _copy_sources(target: Path) -> Path:
    """Copy what the wheel is made of (``pyproject.toml``, the readme, the packages it finds) to ``target``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copyfile(ROOT / name, target / name)
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _backend_installed() -> bool:
    """Whether the build backend the project names (setuptools >= 68 and wheel) is installed here."""
    try:
        setuptools_major = int(metadata.version("setuptools").split(".")[0])
        metadata.version("wheel")
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return setuptools_major >= 68


def _build_wheel(sources: Path, out: Path) -> Path:
    """Build the project's wheel with pip; skip the test if pip needs an index it cannot reach."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-w", str(out)]
    if _backend_installed():
        command.append("--no-build-isolation")  # offline: the backend comes from this environment
    result = subprocess.run([*command, str(sources)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        if any(sign in output for sign in OFFLINE_SIGNS):
            pytest.skip(
                "pip cannot build the wheel offline: the build backend (setuptools>=68, wheel) is not installed "
                "in this environment and no package index is reachable"
            )
        pytest.fail(f"pip wheel failed:\n{output[-3000:]}")
    wheels = list(out.glob("dvc_gateway-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_demo_runs_from_the_installed_wheel_in_an_empty_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(_copy_sources(tmp_path / "src"), tmp_path / "dist")
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*install, "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (site / "gateway" / "demo_data" / "trust" / "crls" / "ca.crl").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(site), str(ROOT)],
        cwd=empty,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert f"gateway from {site}" in result.stderr
    out = result.stdout
    assert "procedures imported from the sample catalogue" in out
    assert "returned (national code 10)" in out
    assert "originals check: not required" in out
    assert "originals check: required" in out
    assert out.rstrip().splitlines()[-1].startswith("Walk-through finished in ")
    assert "Traceback" not in result.stderr
    assert list(empty.iterdir()) == []
