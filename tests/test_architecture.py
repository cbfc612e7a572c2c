"""The codebase's shape: layers and contracts (import-linter), no import cycles, small modules and functions, and a
command line that loads only what it runs."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "adapters", "signing")
#: Generated code kept out of the size rules.
EXEMPT = ("gateway/store/migrations/",)
HEAVY = ("pyhanko", "zeep", "sqlalchemy", "uvicorn")


def _sources() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith(EXEMPT):
                found.append(path)
    return found


def test_import_linter_contracts_hold() -> None:
    command = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(command)], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_another_in_a_circle() -> None:
    """Imports inside functions and under ``TYPE_CHECKING`` count too: a cycle is a cycle however it is hidden."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False)
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "circular"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from circular import b\n")
    (package / "b.py").write_text("from circular import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("circular")) == [["circular.a", "circular.b"]]


def test_modules_and_functions_stay_small() -> None:
    big_modules = []
    long_functions = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(ROOT).as_posix()
        if text.count("\n") > 600:
            big_modules.append(f"{relative} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{relative}:{node.lineno} {node.name} ({length} lines)")
    assert big_modules == []
    assert long_functions == []


def test_test_and_benchmark_modules_stay_small() -> None:
    big = []
    for folder in ("tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > 600:
                big.append(f"{path.relative_to(ROOT).as_posix()} ({lines} lines)")
    assert big == []


def _modules_loaded(*args: str) -> set[str]:
    """The top-level packages ``python -X importtime -m gateway ARGS`` imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gateway", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _heavy(names: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in roots or n in roots)


def test_version_and_help_load_no_heavy_library() -> None:
    for args in (("--version",), ("--help",)):
        loaded = _modules_loaded(*args)
        assert "gateway.cli" in loaded
        assert _heavy(loaded, HEAVY) == []


def test_verify_loads_no_server_or_database_module(tmp_path: Path) -> None:
    document = tmp_path / "plain.txt"
    document.write_text("no signature here\n")
    loaded = _modules_loaded("verify", str(document), "--offline", "--json")
    assert "signing" in loaded
    assert _heavy(loaded, ("sqlalchemy", "uvicorn", "starlette", "fastapi")) == []
    assert sorted(n for n in loaded if n.startswith(("gateway.api", "gateway.daemon", "gateway.store"))) == []


def test_the_daemons_process_starts_without_pyhanko_or_openpyxl() -> None:
    """Signatures are validated in the signature workers: the daemon's own process (its modules, its trust store and
    verifier) never loads ``pyhanko.sign`` (its signers and their HTTP clients: about 0.4 s of every start); openpyxl
    is loaded when a workbook is written, not at start."""
    trust = ROOT / "examples" / "trust"
    program = (
        "import sys\n"
        "import gateway.commands.serve, gateway.daemon, gateway.bootstrap\n"
        "from signing import TrustSettings, TrustStore, Verifier\n"
        f"settings = TrustSettings(trust_anchors=[{str(trust / 'root.pem')!r}], crls=[{str(trust / 'crls')!r}])\n"
        "store = TrustStore.load(settings)\n"
        "Verifier(store, settings=settings, budget=settings.budget).close()\n"
        "unwanted = ('pyhanko', 'openpyxl')\n"
        "print(len(store.anchors), sorted(n for n in sys.modules if n.split('.')[0] in unwanted))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "[]"]


#: The flows whose sections the configuration reads (their packages and settings modules, nothing more).
FLOWS_READ = ("national", "payment", "postal")


def test_cassette_and_simulator_commands_load_no_composition_root(tmp_path: Path) -> None:
    """Reading the configuration loads no flow handler (the flows' packages import none of their modules), so the
    cassette commands load neither the ORM's models nor pyHanko; a simulator serves without the composition root."""
    loaded = _modules_loaded("cassette", "show", str(tmp_path / "absent"))
    assert "gateway.settings" in loaded
    assert _heavy(loaded, ("pyhanko", "zeep", "fastapi", "uvicorn")) == []
    assert "gateway.store.models" not in loaded
    flows = {"gateway.flows", *(f"gateway.flows.{flow}{part}" for flow in FLOWS_READ for part in ("", ".settings"))}
    assert sorted(
        n for n in loaded if n.startswith(("gateway.daemon", "gateway.bootstrap", "gateway.flows"))
    ) == sorted(flows)
    loaded = _modules_loaded("simulate", "payment", "--token", "x")  # a usage error, once the command is loaded
    assert "gateway.serving" in loaded
    assert _heavy(loaded, ("pyhanko", "zeep")) == []
    assert sorted(n for n in loaded if n.startswith(("gateway.daemon", "gateway.bootstrap"))) == []


def test_the_catalogues_commands_load_no_composition_root(tmp_path: Path) -> None:
    """``procedure import`` and ``list`` work on the database alone: the upstreams' composition (and every flow's
    handler with it) is loaded by ``procedure sync`` when it asks the national portal, not with the command's
    module."""
    loaded = _modules_loaded("procedure", "import", str(tmp_path / "absent.json"))  # a usage error, once loaded
    assert {"gateway.catalogue", "gateway.commands.national"} <= loaded  # the command and what it imports
    assert sorted(n for n in loaded if n.startswith(("gateway.daemon", "gateway.bootstrap"))) == []
