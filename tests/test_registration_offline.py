"""Registering offline (``agency register --no-check``) asks no DNS, yet the address is screened where the gateway
connects; a procedure whose catalogue entry does not name the agency is refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.cli import main
from gateway.registry import RegistrationError, RegistrySettings, check_endpoint, validate_registration
from tests.servers import ServerThread

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "examples" / "procedures.json"
AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"  # the sample catalogue names AGENCY its competent agency
STRICT = RegistrySettings()


def document(endpoint: str = "https://motcua.soxaydung.invalid/api", **changes: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": endpoint,
        "procedures": [PROCEDURE],
        "auth": {"type": "none"},
    }
    doc.update(changes)
    return doc


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name looked up (and refused, as an offline machine would)."""
    asked: list[str] = []

    def refuse(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return asked


def test_offline_registration_asks_no_dns(no_dns: list[str]) -> None:
    reg = validate_registration(document(), settings=STRICT, known_procedures={PROCEDURE: [AGENCY]}, resolve=False)
    assert reg.endpoint == "https://motcua.soxaydung.invalid/api"
    assert no_dns == []


def test_a_checked_registration_refuses_a_name_that_does_not_resolve(no_dns: list[str]) -> None:
    with pytest.raises(RegistrationError, match=r"endpoint: cannot resolve motcua\.soxaydung\.invalid"):
        validate_registration(document(), settings=STRICT, known_procedures={PROCEDURE})
    assert "motcua.soxaydung.invalid" in no_dns


@pytest.mark.parametrize(
    ("endpoint", "settings", "message"),
    [
        ("https://169.254.169.254/api", RegistrySettings(allow_private_endpoints=True), "cloud metadata"),
        ("https://localhost/api", STRICT, "loopback address (allowed only with [registry] allow_private_endpoints"),
        ("https://10.1.2.3/api", STRICT, "private"),
        ("http://localhost:8080/api", RegistrySettings(allow_private_endpoints=True), "the gateway's own address"),
    ],
)
def test_offline_registration_still_screens_literal_addresses(
    no_dns: list[str], endpoint: str, settings: RegistrySettings, message: str
) -> None:
    with pytest.raises(RegistrationError, match="endpoint: ") as refused:
        validate_registration(document(endpoint), settings=settings, known_procedures={PROCEDURE}, resolve=False)
    assert message in str(refused.value)
    assert no_dns == []


def _agency_app() -> Starlette:
    async def status(request):
        return JSONResponse({"error": "unknown dossier"}, status_code=404)

    return Starlette(routes=[Route("/dossiers/{code}", status)])


def test_a_name_registered_offline_is_screened_when_the_gateway_connects() -> None:
    name = socket.gethostname()
    try:
        addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(name, None)}
    except OSError:
        pytest.skip(f"this host's name {name} does not resolve")
    if any(address.is_global for address in addresses):
        pytest.skip(f"this host's name {name} resolves to a public address")
    with ServerThread(_agency_app()) as server:
        port = server.base_url.rsplit(":", 1)[1]
        settings = RegistrySettings(allow_insecure_http=True)  # private addresses refused
        reg = validate_registration(
            document(f"http://{name}:{port}"), settings=settings, known_procedures={PROCEDURE}, resolve=False
        )
        refused = asyncio.run(check_endpoint(reg, settings=settings))
        assert not refused.ok and "Refusing to connect" in refused.message
        allowed = asyncio.run(check_endpoint(reg, settings=RegistrySettings(allow_private_endpoints=True)))
        assert allowed.ok, allowed.message  # the same agency, where private addresses are allowed: it answers


def test_registration_refuses_a_procedure_the_catalogue_gives_to_other_agencies() -> None:
    known = {PROCEDURE: ["000.00.24.H38"], "2.001610": ["000.00.10.H38"]}
    with pytest.raises(RegistrationError) as refused:
        validate_registration(document(procedures=[PROCEDURE]), settings=STRICT, known_procedures=known, resolve=False)
    assert refused.value.errors == [
        {
            "field": "procedures",
            "message": f"{AGENCY} is not a competent agency of {PROCEDURE} (the catalogue names 000.00.24.H38), so "
            "every dossier for it would be refused: add the agency to the procedure's agencies in the catalogue "
            "and import it again",
        }
    ]
    ok = validate_registration(document(), settings=STRICT, known_procedures={PROCEDURE: [AGENCY]}, resolve=False)
    assert ok.procedures == [PROCEDURE]


def test_the_cli_registers_offline_and_refuses_an_incompetent_agency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_dns: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_GATEWAY_CONFIG", raising=False)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n', "utf-8")
    assert main(["procedure", "import", str(CATALOGUE), "--config", str(config)]) == 0
    sxd = tmp_path / "sxd.json"
    sxd.write_text(
        '{"code": "000.00.23.H38", "name": "Sở Xây dựng", "protocol": "rest", '
        '"endpoint": "https://motcua.soxaydung.invalid/api", "procedures": ["1.009794"]}',
        "utf-8",
    )
    capsys.readouterr()
    assert main(["agency", "register", "--no-check", "--file", str(sxd), "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("registered 000.00.23.H38 (Sở Xây dựng): rest https://motcua.soxaydung.invalid/api")
    assert "registered without a check" in err and no_dns == []

    stranger = tmp_path / "stp.json"
    stranger.write_text(sxd.read_text("utf-8").replace("000.00.23.H38", "000.00.23.H40"), "utf-8")
    assert main(["agency", "register", "--no-check", "--file", str(stranger), "--config", str(config)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("dvc-gateway: error: ") and "000.00.23.H40 is not a competent agency of 1.009794" in line
