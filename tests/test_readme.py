"""README.md's examples, run as written (a docs test).

A fenced block takes part when the line before its opening fence is one of these HTML comments:

* ``<!-- docs-test: file NAME -->``: the block is saved as ``NAME`` in the workspace (a registration document, a test
  module), for the blocks after it;
* ``<!-- docs-test: run [exit=N] [expect="text"]… -->``: the block is run (``sh`` with ``bash -e -o pipefail``,
  ``python`` with the venv's interpreter) in the workspace; it must exit with ``N`` (0 unless said) and print every
  ``expect`` text;
* ``<!-- docs-test: skip REASON -->``: the block cannot run here (it installs from the network, serves until stopped,
  is a fragment); the reason is reported as a skipped test.

Untagged blocks are not run, so a new section's blocks are tested once someone tags them. The tagged blocks run in
README order in one workspace, a temporary folder standing for the repository's root: ``examples/`` copied, ``.venv``
linked to the running virtual environment (so ``.venv/bin/dvc-gateway`` is the installed script). Every loopback port
the run blocks name (and the sample configuration's ``[server] port``) is moved to a free one, so the examples never
collide with a server already listening. Each block runs in a process group of its own, stopped when it ends (a
failing block leaves no server behind); the blocks wait for servers with ``curl --retry``, never with a fixed sleep.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.commands.simulate import DEFAULT_PORT
from gateway.simulators import national_portal, payment, postal
from gateway.simulators.soap_agency import VARIANT_MAPPING

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TAG = re.compile(r"^<!-- docs-test: (?P<kind>[a-z]+)(?: (?P<args>.*?))? -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
#: A loopback port a run block names (``127.0.0.1:8080``, ``--port 9101``).
PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d{4,5})\b|(?<=--port )(\d{4,5})\b")
BLOCK_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Block:
    """One tagged fenced block of the README."""

    line: int  # of the opening fence, 1-based
    lang: str
    kind: str  # file | run | skip
    args: str
    text: str
    options: dict[str, list[str]] = field(default_factory=dict)
    section: str = ""  # the ``## `` heading it is under

    @property
    def name(self) -> str:
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        return f"README.md:{self.line} ({self.lang}: {first[:60]})"


def parse_blocks(markdown: str) -> list[Block]:
    """The tagged blocks of ``markdown``, in order; a malformed tag is an error (a typo must not silently skip)."""
    lines = markdown.splitlines()
    blocks, index, section = [], 0, ""
    while index < len(lines):
        if lines[index].startswith("## "):
            section = lines[index][3:].strip()
        tag = TAG.match(lines[index].strip())
        if lines[index].lstrip().startswith("<!-- docs-test") and tag is None:
            raise ValueError(f"README.md:{index + 1}: malformed docs-test tag: {lines[index]!r}")
        if tag is None:
            index += 1
            continue
        fence = FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"README.md:{index + 1}: a docs-test tag must be right above a fenced block")
        end = next((i for i in range(index + 2, len(lines)) if lines[i].startswith("```")), None)
        if end is None:
            raise ValueError(f"README.md:{index + 2}: unclosed fenced block")
        kind, args = tag["kind"], (tag["args"] or "").strip()
        if kind not in ("file", "run", "skip"):
            raise ValueError(f"README.md:{index + 1}: unknown docs-test kind {kind!r} (file, run, skip)")
        if kind in ("file", "skip") and not args:
            raise ValueError(
                f"README.md:{index + 1}: docs-test {kind} needs {'a name' if kind == 'file' else 'a reason'}"
            )
        options: dict[str, list[str]] = {}
        if kind == "run":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                if key not in ("exit", "expect") or not value:
                    raise ValueError(f"README.md:{index + 1}: docs-test run takes exit=N and expect=TEXT, got {word!r}")
                options.setdefault(key, []).append(value)
            if fence["lang"] not in ("sh", "bash", "python"):
                raise ValueError(f"README.md:{index + 2}: docs-test run is for sh or python blocks")
        text = "\n".join(lines[index + 2 : end]) + "\n"
        blocks.append(Block(index + 2, fence["lang"], kind, args, text, options, section))
        index = end + 1
    return blocks


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def _moved_ports(texts: list[str]) -> dict[str, str]:
    """Every port the texts name → a free loopback port (the same one everywhere)."""
    named = {match.group(0) for text in texts for match in PORT.finditer(text)}
    taken: set[int] = set()
    return {port: str(_free_port(taken)) for port in sorted(named)}


def _move(text: str, ports: dict[str, str]) -> str:
    return PORT.sub(lambda match: ports.get(match.group(0), match.group(0)), text)


@dataclass
class Workspace:
    path: Path
    env: dict[str, str]
    ports: dict[str, str]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the README's shell examples need bash and curl")
    if not (Path(sys.prefix) / "bin" / "dvc-gateway").is_file():
        pytest.skip(f"dvc-gateway is not installed in {sys.prefix} (pip install -e '.[dev]')")
    path = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", path / "examples", ignore=shutil.ignore_patterns("var", "__pycache__"))
    (path / ".venv").symlink_to(Path(sys.prefix))
    sample = path / "examples" / "gateway.toml"
    config = sample.read_text(encoding="utf-8")
    server_port = str(tomllib.loads(config)["server"]["port"])
    ports = _moved_ports([block.text for block in BLOCKS if block.kind == "run"] + [f"127.0.0.1:{server_port}"])
    sample.write_text(config.replace(f"port = {server_port}", f"port = {ports[server_port]}"), encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DVC_GATEWAY_", "PYTEST_", "COV_")) and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    yield Workspace(path, env, ports)


def _stop_group(pgid: int) -> None:
    """Stop what a block left running (its servers), politely first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:  # until the group is gone (a condition polled, bounded), then harder
            for _ in range(100):
                os.killpg(pgid, 0)
                time.sleep(0.05)
        except ProcessLookupError:
            return


def run_block(block: Block, ws: Workspace) -> tuple[int, str]:
    """Run ``block`` in the workspace: its exit code and what it printed (stdout, then stderr)."""
    text = _move(block.text, ws.ports)
    command = ["bash", "-e", "-o", "pipefail", "-c", text]
    if block.lang == "python":
        command = [str(Path(sys.prefix) / "bin" / "python"), "-c", text]
    out, err = ws.path / f".block-{block.line}.out", ws.path / f".block-{block.line}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(  # files, not pipes: a server left behind must not keep the test waiting
            command,
            cwd=ws.path,
            env=ws.env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=BLOCK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            _stop_group(process.pid)
            process.wait()
    printed = out.read_text("utf-8", "replace") + err.read_text("utf-8", "replace")
    return code, printed


def _people_lines(printed: str) -> str:
    """What a block printed for people (the daemons' JSON log lines left out), for failure messages."""
    return "\n".join(line for line in printed.splitlines() if not line.startswith('{"'))[-4000:]


def test_the_readme_tags_its_examples() -> None:
    kinds = {block.kind for block in BLOCKS}
    assert kinds == {"file", "run", "skip"}, kinds
    files = [block.args for block in BLOCKS if block.kind == "file"]
    assert {"sxd.json", "skhdt.toml", "test_sxd_session.py"} <= set(files)
    with pytest.raises(ValueError, match="unknown docs-test kind"):
        parse_blocks("<!-- docs-test: runn -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="malformed"):
        parse_blocks("<!-- docs-test:run-->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="exit=N"):
        parse_blocks('<!-- docs-test: run expected="x" -->\n```sh\ntrue\n```\n')


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "skip"], ids=lambda b: f"line-{b.line}")
def test_blocks_that_cannot_run_say_why(block: Block) -> None:
    pytest.skip(f"{block.name}: {block.args}")


def run_section(blocks: list[Block], ws: Workspace) -> list[str]:
    """The ``file`` and ``run`` blocks of one section, in order, up to the first failure: what went wrong, if any."""
    for block in blocks:
        if block.kind == "file":
            (ws.path / block.args).write_text(_move(block.text, ws.ports), encoding="utf-8")
            continue
        started = time.monotonic()
        code, printed = run_block(block, ws)
        print(f"{block.name}: exit {code} after {time.monotonic() - started:.1f} s")
        expected_exit = int(block.options.get("exit", ["0"])[0])
        if code != expected_exit:
            return [f"{block.name} exited {code}, not {expected_exit}:\n{_people_lines(printed)}"]
        missing = [text for text in block.options.get("expect", []) if text not in printed]
        if missing:
            return [f"{block.name} did not print {missing}:\n{_people_lines(printed)}"]
    return []


def test_the_readme_examples_run_as_written(workspace: Workspace) -> None:
    """Every ``file`` and ``run`` block: the verdicts on the samples, registration offline and against the simulated
    SOAP agency with the README's mapping, the recording and replay walkthrough, then the pytest plugin example on its
    cassette. Each ``## `` section's blocks run in README order; the sections (chapters a reader may start at, from
    the repository's root) run side by side, on the ports each names."""
    sections: dict[str, list[Block]] = {}
    for block in BLOCKS:
        if block.kind in ("file", "run"):
            sections.setdefault(block.section, []).append(block)
    assert sum(block.kind == "run" for blocks in sections.values() for block in blocks) >= 5, sections.keys()
    with ThreadPoolExecutor(max_workers=len(sections)) as pool:
        failures = [
            f for found in pool.map(lambda blocks: run_section(blocks, workspace), sections.values()) for f in found
        ]
    assert not failures, "\n\n".join(failures)


def test_the_readme_mapping_is_the_one_the_simulated_variant_needs() -> None:
    """The SOAP example's ``mapping`` is exactly what ``simulate agency --protocol soap --mapping-variant`` needs
    (operations, every renamed element, every status value), so a dossier delivered with it is understood."""
    document = next(block for block in BLOCKS if block.kind == "file" and block.args == "skhdt.toml")
    assert tomllib.loads(document.text)["mapping"] == VARIANT_MAPPING


@pytest.mark.parametrize("upstream", ["agency", "national-portal", "payment", "postal"])
def test_the_simulators_defaults_are_where_users_look(upstream: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``simulate UPSTREAM --help`` and the README give the simulators' real defaults (read from the simulators)."""
    parameters = {
        "national-portal": inspect.signature(national_portal.create_app).parameters,
        "payment": inspect.signature(payment.create_app).parameters,
        "postal": inspect.signature(postal.create_app).parameters,
    }
    defaults = [
        *(parameters["national-portal"][name].default for name in ("username", "password", "dstcode")),
        *(parameters["payment"][name].default for name in ("merchant_code", "secret")),
        parameters["postal"]["secret"].default,
        "http://127.0.0.1:8080/api/v1/agencies/000.00.23.H38/events",  # the REST agency's full callback URL
        "http://127.0.0.1:8080/soap/callback",
        "http://127.0.0.1:8080/api/v1/payments/notify",
        "http://127.0.0.1:8080/api/v1/postal/events",
    ]
    with pytest.raises(SystemExit) as exited:
        main(["simulate", upstream, "--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())  # as one line: help text wraps
    readme = README.read_text(encoding="utf-8")
    assert f"port {DEFAULT_PORT}" in shown and f"default {DEFAULT_PORT}" in readme
    for value in defaults:
        assert value in shown, value
        assert f"`{value}`" in readme, value
