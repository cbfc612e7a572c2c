"""A client generated from ``/openapi.json`` by openapi-python-client submits a dossier and reads it back, against the
gateway served on 127.0.0.1: the document is complete enough for code generated from it to work."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api import create_app
from tests.api_support import APPLICANT, PORTAL_TOKEN, Clock, open_runtime, submission
from tests.servers import ServerThread

#: The generator installed beside this interpreter (the dev extras), else one on PATH.
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "dvc_gateway_client"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with open_runtime("sqlite", tmp_path) as runtime, ServerThread(create_app(runtime, clock=Clock())) as server:
        yield server.base_url


def generator() -> str | None:
    return str(GENERATOR) if GENERATOR.exists() else shutil.which("openapi-python-client")


def generate(command: str, base_url: str, folder: Path) -> None:
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(f"{base_url}/openapi.json", timeout=10).content)
    config = folder / "generator.yaml"
    config.write_text(f"post_hooks: []\npackage_name_override: {PACKAGE}\n", encoding="utf-8")
    subprocess.run(
        [command, "generate", "--path", str(document), "--config", str(config), "--meta", "none",
         "--output-path", str(folder / PACKAGE)],
        check=True, capture_output=True, cwd=folder, timeout=60,
    )  # fmt: skip


@pytest.fixture
def client_package(served: str, tmp_path: Path) -> Iterator[Any]:
    command = generator()
    if command is None:
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    generate(command, served, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_a_generated_client_submits_and_reads_a_dossier(client_package: Any, served: str) -> None:
    submit = importlib.import_module(f"{PACKAGE}.api.dossiers.submit_dossier")
    get = importlib.import_module(f"{PACKAGE}.api.dossiers.get_dossier")
    lookup = importlib.import_module(f"{PACKAGE}.api.public.lookup")
    models = importlib.import_module(f"{PACKAGE}.models")

    client = client_package.AuthenticatedClient(base_url=served, token=PORTAL_TOKEN)
    body = models.Submission.from_dict(submission())
    created = submit.sync_detailed(client=client, body=body, idempotency_key="generated-client-1")
    assert created.status_code == 201
    dossier = created.parsed
    assert isinstance(dossier, models.DossierView)
    assert dossier.status == "submitted" and dossier.procedure_code == "1.009794"
    assert [c.code for c in dossier.components] == ["TP1", "TP2", "TP3"]
    assert dossier.components[0].verification.verdict.value == "unsigned"
    assert dossier.fees[0].amount == 150000

    read = get.sync(code=dossier.code, client=client)
    assert isinstance(read, models.DossierView)
    assert read.code == dossier.code and read.applicant["full_name"] == APPLICANT["full_name"]
    assert read.history and {item.status for item in read.history} == {"submitted"}
    assert read.submitted_at.utcoffset() is not None  # a date-time, parsed

    public = client_package.Client(base_url=served)
    status = lookup.sync(code=dossier.code, client=public)
    assert isinstance(status, models.LookupView) and status.status == "submitted"

    missing = get.sync_detailed(code=dossier.code.replace("-0001", "-0999"), client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.ErrorResponse) and missing.parsed.error.code == "not_found"
