"""A non-Python SOAP stack hosts the single-file reference WSDL and receives a dossier from the gateway.

node-soap's server cannot follow the reference WSDL's schema import (``hoso.xsd``); it can host the self-contained
form (:func:`adapters.onestop.wsdl.single.single_wsdl`). The test installs the ``soap`` npm package into a temporary
folder, serves that WSDL with it on 127.0.0.1, registers the agency with the WSDL URL node-soap publishes, submits a
dossier through the API and lets the outbox deliver it: node-soap receives ``TiepNhanHoSo``. Skipped, with the
reason, when Node.js or npm is missing or the package cannot be installed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from adapters.onestop.wsdl.single import single_wsdl
from gateway.bootstrap import Composition
from gateway.outbox import RetryPolicy
from gateway.workers import OutboxWorker
from tests.api_support import ADMIN, AGENCY, PROCEDURE, Gateway, gateway_client, open_runtime

PLACEHOLDER = "http://node-soap.invalid/soap"

#: A one-stop system in node-soap: logs each request as a JSON line on stdout and answers as the contract says.
SERVER_JS = r"""
const http = require("http");
const fs = require("fs");
const soap = require("soap");

const [wsdlPath, placeholder] = process.argv.slice(2);
const log = (entry) => process.stdout.write(JSON.stringify(entry) + "\n");
const received = new Set();

function deliver(args) {
  const code = args.HoSo.MaHoSo;
  const repeat = received.has(code);
  received.add(code);
  log({ operation: "TiepNhanHoSo", key: args.KhoaYeuCau, dossier: args.HoSo });
  return { MaHoSo: code, MaThamChieu: "NODE-" + code, TrangThai: "submitted", LapLai: repeat };
}

const port = {
  TiepNhanHoSo: deliver,
  LayTrangThaiHoSo: (args) => ({}),
  BoSungHoSo: (args) => ({ MaHoSo: args.MaHoSo }),
  RutHoSo: (args) => ({ MaHoSo: args.MaHoSo }),
};
const service = { TiepNhanHoSoService: { TiepNhanHoSoSoap11: port } };

const server = http.createServer((request, response) => {
  response.statusCode = 404;
  response.end();
});
server.listen(0, "127.0.0.1", () => {
  const address = `http://127.0.0.1:${server.address().port}/soap`;
  const wsdl = fs.readFileSync(wsdlPath, "utf8").split(placeholder).join(address);
  soap.listen(server, "/soap", service, wsdl, () => log({ listening: address }));
});
"""


@pytest.fixture(scope="module")
def node_soap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the ``soap`` npm package installed (skips when that cannot be done here)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to host the WSDL in node-soap")
    folder = tmp_path_factory.mktemp("node-soap")
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(folder), "soap@^1"],
            check=True, capture_output=True, timeout=180, cwd=folder,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"npm could not install the soap package: {output.decode(errors='replace').strip()[:300]}")
    (folder / "server.js").write_text(SERVER_JS, encoding="utf-8")
    return folder


class NodeAgency:
    """The node-soap server process: its address and the requests it logged."""

    def __init__(self, folder: Path, wsdl: Path) -> None:
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(folder / "server.js"), str(wsdl), PLACEHOLDER],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder,
        )  # fmt: skip
        self.entries: list[dict[str, Any]] = []
        first = self._next()
        assert "listening" in first, first
        self.address: str = first["listening"]

    def _next(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"node-soap stopped: {stderr.decode(errors='replace')[:500]}")
        return json.loads(line)

    def received(self) -> dict[str, Any]:
        entry = self._next()
        self.entries.append(entry)
        return entry

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def node_agency(node_soap: Path, tmp_path: Path) -> Iterator[NodeAgency]:
    wsdl = tmp_path / "TiepNhanHoSo.single.wsdl"
    wsdl.write_bytes(single_wsdl("reference", "1.1", address=PLACEHOLDER))
    agency = NodeAgency(node_soap, wsdl)
    try:
        yield agency
    finally:
        agency.stop()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with open_runtime("sqlite", tmp_path) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


async def test_node_soap_hosts_the_single_wsdl_and_receives_a_dossier(gw: Gateway, node_agency: NodeAgency) -> None:
    registration = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "soap",
        "wsdl": f"{node_agency.address}?wsdl",  # as node-soap publishes it: loaded and checked at registration
        "procedures": [PROCEDURE],
        "auth": {"type": "none"},
        "status_updates": {"mode": "callback"},
    }
    registered = await gw.client.post("/api/v1/admin/agencies?replace=true", json=registration, headers=ADMIN)
    assert registered.status_code == 200, registered.text

    code = (await gw.submitted())["code"]
    dispatcher = Composition(gw.runtime)
    worker = OutboxWorker(gw.runtime.db, dispatcher, policy=RetryPolicy(max_attempts=1, initial_seconds=0.01))
    try:
        with anyio.fail_after(30):
            while (await worker.run_once()) or not await _delivered(gw, code):
                await asyncio.sleep(0.01)
    finally:
        await dispatcher.aclose()

    entry = await anyio.to_thread.run_sync(node_agency.received)
    assert entry["operation"] == "TiepNhanHoSo"
    assert entry["dossier"]["MaHoSo"] == code and entry["dossier"]["MaTTHC"] == PROCEDURE
    assert entry["key"]


async def _delivered(gw: Gateway, code: str) -> bool:
    response = await gw.client.get("/api/v1/admin/outbox", params={"target": AGENCY}, headers=ADMIN)
    messages = [m for m in response.json()["messages"] if m["kind"] == "agency.deliver"]
    assert all(m["state"] != "dead" for m in messages), messages
    return bool(messages) and all(m["state"] == "done" for m in messages)
