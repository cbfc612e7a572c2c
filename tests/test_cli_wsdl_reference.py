"""``dvc-gateway wsdl reference``: the shipped WSDLs as files, or one self-contained document zeep can load."""

from __future__ import annotations

from pathlib import Path

import pytest
import zeep

from gateway.cli import main


def test_writes_the_shipped_wsdl_with_its_schemas(tmp_path: Path) -> None:
    assert main(["wsdl", "reference", "--output", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["TiepNhanHoSo.wsdl", "hoso.xsd", "xml.xsd"]
    assert b"hoso.xsd" in (tmp_path / "TiepNhanHoSo.wsdl").read_bytes()


@pytest.mark.parametrize("soap", ["1.1", "1.2"])
def test_single_document_loads_alone_with_one_binding(tmp_path: Path, soap: str) -> None:
    assert main(["wsdl", "reference", "--single", "--soap", soap, "--output", str(tmp_path)]) == 0
    [written] = list(tmp_path.iterdir())
    text = written.read_text(encoding="utf-8")
    assert "schemaLocation" not in text
    client = zeep.Client(str(written))
    ports = [port for service in client.wsdl.services.values() for port in service.ports.values()]
    assert ports
    assert {type(port.binding).__name__ for port in ports} == {"Soap11Binding" if soap == "1.1" else "Soap12Binding"}
    operations = {name for port in ports for name in port.binding._operations}
    assert "TiepNhanHoSo" in operations


def test_callback_single_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["wsdl", "reference", "--kind", "callback", "--single", "--output", "-"]) == 0
    assert b"CapNhatTrangThaiHoSo" in capsysbinary.readouterr().out


@pytest.mark.parametrize("argv", [["--soap", "1.1"], ["--output", "-"], ["--single", "--soap", "2.0"]])
def test_refuses_options_that_do_not_go_together(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["wsdl", "reference", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dvc-gateway: error:") and err.count("\n") == 1
