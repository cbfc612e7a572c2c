"""``dvc-gateway wsdl check`` and ``wsdl suggest-mapping``: the report and its JSON shape, exit codes, local files
with their imports, and a suggested mapping that registers and delivers, unedited, to the simulator's mapping variant.

The simulators listen on 127.0.0.1 (``[registry] allow_private_endpoints = true``); every wait has a limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.onestop.soap import WsdlLimits
from gateway.bootstrap import Composition
from gateway.bootstrap.agency_clients import wsdl_limits
from gateway.cli import main
from gateway.registry import RegistrySettings
from gateway.settings import Settings
from gateway.simulators.soap_agency import VARIANT_MAPPING, create_soap_app
from tests.api_support import ADMIN, Gateway, gateway_client, open_runtime
from tests.servers import ServerThread
from tests.test_dispatch import deliver_view
from tests.test_soap_end_to_end import deliver_all, soap_document
from tests.test_wsdl_loading import wsdl_importing

DATA = Path(__file__).parent / "data" / "wsdl"


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))  # the CLI runs event loops of its own
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def local_config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text("[registry]\nallow_private_endpoints = true\n", encoding="utf-8")
    return path


async def test_check_json_shape_for_many_sources(
    capsys: pytest.CaptureFixture[str], local_config: Path, tmp_path: Path
) -> None:
    with ServerThread(create_soap_app(mapping_variant=True)) as soap:
        sources = [f"{soap.base_url}/soap?wsdl", str(DATA / "dotnet" / "service.wsdl"), str(tmp_path / "none.wsdl")]
        code, out, err = await cli(
            capsys, "wsdl", "check", *sources, "--json", "--reference", "--config", str(local_config)
        )
    assert code == 1  # one description does not load
    assert err == f"dvc-gateway: error: {tmp_path / 'none.wsdl'}: cannot load: no such file\n"
    variant, dotnet, missing = json.loads(out)
    assert set(variant) == {"source", "loaded", "services", "warnings", "error", "reference_operations"}
    assert variant["loaded"] is True and variant["error"] is None and variant["warnings"] == []
    (service,) = variant["services"]
    assert [port["soap_version"] for port in service["ports"]] == ["1.1", "1.2"]
    assert set(service["ports"][0]) == {"name", "binding", "soap_version", "style", "address", "operations"}
    assert service["ports"][0]["operations"] == ["BoSungThanhPhan", "HuyHoSo", "NhanHoSo", "TraCuuHoSo"]
    assert variant["reference_operations"] == {
        "TiepNhanHoSo": False,
        "LayTrangThaiHoSo": False,
        "BoSungHoSo": False,
        "RutHoSo": False,
    }
    # A .NET description in four files: the bindings are in the imported contract.wsdl, the service in the root.
    assert dotnet["loaded"] is True
    ports = {port["name"]: port for port in dotnet["services"][0]["ports"]}
    assert ports["BasicHttpBinding_IHoSoService"]["soap_version"] == "1.1"
    assert ports["WSHttpBinding_IHoSoService"]["soap_version"] == "1.2"
    assert ports["WSHttpBinding_IHoSoService"]["operations"] == ["BoSungGiayTo", "NhapHoSo", "RutHoSo", "XemTrangThai"]
    assert dotnet["reference_operations"]["RutHoSo"] is True
    assert missing == {
        "source": str(tmp_path / "none.wsdl"),
        "loaded": False,
        "services": [],
        "warnings": [],
        "error": "no such file",
        "reference_operations": None,
    }


async def test_check_text_report_lists_repairs_and_exits_zero(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wsdl = (
        (DATA / "literal-bare.wsdl")
        .read_text(encoding="utf-8")
        .replace(' xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"', "")
    )
    (tmp_path / "bare.wsdl").write_text(wsdl, encoding="utf-8")
    code, out, err = await cli(
        capsys, "wsdl", "check", str(tmp_path / "bare.wsdl"), str(DATA / "axis-rpc-encoded.wsdl")
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[:6] == [
        f"{tmp_path / 'bare.wsdl'}: loaded (1 document(s); SOAP 1.1)",
        "  service DichVuMotCua",
        "    port MotCuaPort: SOAP 1.1, document, binding MotCuaBinding",
        "      address: http://motcua.soct.example.vn/ws/motcua",
        "      operations: boSungHoSo, guiHoSo, rutHoSo, traCuuHoSo",
        f"  warning: {tmp_path}/bare.wsdl: prefix soap: used without declaration, bound to "
        "http://schemas.xmlsoap.org/wsdl/soap/",
    ]
    assert f"{DATA / 'axis-rpc-encoded.wsdl'}: loaded (1 document(s); SOAP 1.1)" in out


def test_what_zeep_leaves_out_is_reported_not_printed_as_python_warnings(tmp_path: Path) -> None:
    """A description whose messages name undefined elements: the operations left out are the report's warnings, in
    its text and its JSON, and standard error stays empty (no Python warning with the library's file names)."""
    (tmp_path / "enc.wsdl").write_bytes(
        wsdl_importing(
            "http://schemas.xmlsoap.org/soap/encoding/", namespace="http://schemas.xmlsoap.org/soap/encoding/"
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_GATEWAY_")}
    command = [sys.executable, "-m", "gateway", "wsdl", "check", "enc.wsdl"]
    text = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert (text.returncode, text.stderr) == (0, "")
    assert (
        "  warning: The wsdl:operation 'TiepNhanHoSo' was not found in the wsdl:portType "
        "'{urn:dvc:motcua:1.0:wsdl}TiepNhanHoSoPortType'; left out"
    ) in text.stdout.splitlines()
    as_json = subprocess.run([*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert (as_json.returncode, as_json.stderr) == (0, "")
    (report,) = json.loads(as_json.stdout)
    assert len(report["warnings"]) == 13 and all(warning.endswith("; left out") for warning in report["warnings"])


async def test_a_local_description_reads_only_local_wsdl_and_schema_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "agency"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("mật khẩu: 123456", encoding="utf-8")
    contract = (DATA / "dotnet" / "contract.wsdl").read_text(encoding="utf-8")
    for target, expected in (
        ("../secret.txt", f"{tmp_path / 'secret.txt'} is not well-formed XML ("),
        (
            "https://127.0.0.1:9/x.xsd",
            "https://127.0.0.1:9/x.xsd is not a local file (a local description is read "
            f"only from files) (imported by {folder / 'contract.wsdl'})",
        ),
        (
            "file:///etc/passwd",
            f"{folder / 'contract.wsdl'} refers to file:///etc/passwd: only http(s) references are followed",
        ),
    ):
        (folder / "contract.wsdl").write_text(contract.replace("schemas/messages.xsd", target), encoding="utf-8")
        code, out, err = await cli(capsys, "wsdl", "check", str(folder / "contract.wsdl"))
        assert (code, out) == (1, "")
        assert err.startswith(f"dvc-gateway: error: {folder / 'contract.wsdl'}: cannot load: {expected}")
        assert len(err.splitlines()) == 1 and "123456" not in err
    # A schema in a sibling folder (../schemas/…) is read, as other stacks read it.
    (tmp_path / "schemas").mkdir()
    for name in ("messages.xsd", "serialization.xsd"):
        (tmp_path / "schemas" / name).write_bytes((DATA / "dotnet" / "schemas" / name).read_bytes())
    (folder / "contract.wsdl").write_text(contract.replace("schemas/", "../schemas/"), encoding="utf-8")
    (folder / "service.wsdl").write_bytes((DATA / "dotnet" / "service.wsdl").read_bytes())
    code, out, err = await cli(capsys, "wsdl", "check", str(folder / "service.wsdl"))
    assert (code, err) == (0, "")
    assert out.startswith(f"{folder / 'service.wsdl'}: loaded (4 document(s); SOAP 1.1, 1.2)")


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    with open_runtime("sqlite", tmp_path, registry={"wsdl_cache_dir": "wsdl-cache"}) as runtime:
        async for gateway in gateway_client(runtime):
            yield gateway


async def test_suggested_mapping_registers_and_delivers_to_the_mapping_variant(
    gw: Gateway, capsys: pytest.CaptureFixture[str], local_config: Path
) -> None:
    with ServerThread(create_soap_app(mapping_variant=True)) as soap:
        sim = soap.app.state.simulator
        code, out, err = await cli(
            capsys, "wsdl", "suggest-mapping", f"{soap.base_url}/soap?wsdl", "--config", str(local_config)
        )
        assert (code, err) == (0, "")
        suggestion = json.loads(out)
        mapping = suggestion["mapping"]
        assert mapping["operations"] == VARIANT_MAPPING["operations"]
        assert mapping["fields"] == VARIANT_MAPPING["fields"]
        assert suggestion["unmatched"] == []
        assert all(0.8 <= value <= 1 for value in suggestion["confidence"].values())

        url = "/api/v1/admin/agencies?replace=true"
        accepted = await gw.client.post(url, json=soap_document(soap.base_url, mapping=mapping), headers=ADMIN)
        assert accepted.status_code == 200, accepted.text
        dossier = (await gw.submitted())["code"]
        dispatcher = Composition(gw.runtime)
        try:
            await deliver_all(gw.runtime, dispatcher, lambda: dossier in sim.core.dossiers)
            await dispatcher.dispatch(deliver_view(dossier))
        finally:
            await dispatcher.aclose()
        assert sim.core.effects["deliver"] == 1


# Per shape: the reference field → their element a person would map (what the suggestion is compared with).
EXPECTED = {
    "axis-rpc-encoded.wsdl": {
        "operations": {
            "deliver": "nopHoSo",
            "status": "layTinhTrang",
            "supplement": "boSungTaiLieu",
            "withdraw": "huyHoSo",
        },
        "fields": {
            "KhoaYeuCau": "maGiaoDich",
            "HoSo": "hoSo",
            "MaHoSo": "soHoSo",
            "MaTTHC": "maThuTuc",
            "ThanhPhanHoSo": "taiLieu",
            "MaThanhPhan": "maTaiLieu",
            "TrangThai": "tinhTrang",
        },
    },
    "dotnet-wrapped.wsdl": {
        "operations": {
            "deliver": "SubmitDossier",
            "status": "GetDossierStatus",
            "supplement": "AddDocuments",
            "withdraw": "CancelDossier",
        },
        "fields": {
            "KhoaYeuCau": "RequestId",
            "HoSo": "Dossier",
            "MaHoSo": "DossierCode",
            "MaTTHC": "ProcedureCode",
            "ThanhPhanHoSo": "Attachments",
            "MaThanhPhan": "DocumentCode",
            "TrangThai": "Status",
        },
    },
    "literal-bare.wsdl": {
        "operations": {"deliver": "guiHoSo", "status": "traCuuHoSo", "supplement": "boSungHoSo", "withdraw": "rutHoSo"},
        "fields": {
            "KhoaYeuCau": "khoaYeuCau",
            "HoSo": "hoSo",
            "MaHoSo": "maHoSo",
            "MaTTHC": "maThuTucHanhChinh",
            "ThanhPhanHoSo": "giayTo",
            "MaThanhPhan": "maGiayTo",
            "TrangThai": "trangThai",
        },
    },
    "soap12-only.wsdl": {
        "operations": {"deliver": "TiepNhan", "status": "TraCuu", "supplement": "BoSung", "withdraw": "Huy"},
        "fields": {
            "KhoaYeuCau": "MãGiaoDịch",
            "HoSo": "HồSơ",
            "MaHoSo": "SốHồSơ",
            "MaTTHC": "MãThủTục",
            "ThanhPhanHoSo": "ThànhPhầnHồSơ",
            "MaThanhPhan": "MãThànhPhần",
            "TrangThai": "TrạngThái",
        },
    },
    "dotnet/service.wsdl": {
        "operations": {
            "deliver": "NhapHoSo",
            "status": "XemTrangThai",
            "supplement": "BoSungGiayTo",
            "withdraw": "RutHoSo",
        },
        "fields": {
            "KhoaYeuCau": "maGiaoDich",
            "HoSo": "hoSo",
            "MaHoSo": "maHoSo",
            "MaTTHC": "MaThuTuc",
            "ThanhPhanHoSo": "giayTo",
            "MaThanhPhan": "MaGiayTo",
            "TrangThai": "XemTrangThaiResult",
        },
    },
}
#: How many of the 11 guesses (4 operations, 7 fields) the suggestion gets right, per shape (see docs/wsdl.md).
RIGHT = {
    "axis-rpc-encoded.wsdl": 11,
    "dotnet-wrapped.wsdl": 11,
    "literal-bare.wsdl": 11,
    "soap12-only.wsdl": 11,
    "dotnet/service.wsdl": 10,
}


@pytest.mark.parametrize("shape", sorted(EXPECTED))
async def test_suggestions_for_other_shapes(capsys: pytest.CaptureFixture[str], shape: str) -> None:
    code, out, err = await cli(capsys, "wsdl", "suggest-mapping", str(DATA / shape))
    assert (code, err) == (0, "")
    mapping = json.loads(out)["mapping"]
    expected = EXPECTED[shape]
    right = sum(mapping["operations"].get(op) == name for op, name in expected["operations"].items())
    for reference, theirs in expected["fields"].items():
        # a name identical to the reference's needs no mapping: right when the suggestion leaves it out
        right += mapping["fields"].get(reference, reference) == theirs
    assert right == RIGHT[shape]


async def test_limits_come_from_the_registry_section(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "limits.toml"
    config.write_text("[registry]\nwsdl_max_documents = 2\nwsdl_max_total_bytes = 900000\n", encoding="utf-8")
    source = str(DATA / "dotnet" / "service.wsdl")
    code, out, err = await cli(capsys, "wsdl", "check", source, "--config", str(config))
    assert (code, out) == (1, "")
    assert err == f"dvc-gateway: error: {source}: cannot load: the service description has more than 2 documents\n"
    settings = Settings.from_raw({"registry": {"wsdl_max_total_bytes": 900000}}, tmp_path)
    assert wsdl_limits(settings.registry) == WsdlLimits(max_total_bytes=900000)
    assert RegistrySettings.of(settings).wsdl_max_total_bytes == 900000
