"""`dvc-gateway agency|procedure|db` as an operator runs them: a real SQLite file, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "procedures.json"

_real_getaddrinfo = socket.getaddrinfo


def _fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if host == "motcua.soxaydung.example.vn":  # a public agency host, without a network
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("14.160.32.10", port or 0))]
    return _real_getaddrinfo(host, port, family, type, proto, flags)


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo)
    monkeypatch.delenv("DVC_GATEWAY_CONFIG", raising=False)


def make_config(directory: Path, registry: str = "", extra: str = "") -> Path:
    path = directory / "gateway.toml"
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 8080\n[database]\nurl = "sqlite:///{directory / "var" / "gw.db"}"\n'
        f"[registry]\n{registry}\n{extra}",
        "utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path) -> Path:
    path = make_config(tmp_path)
    assert main(["procedure", "import", str(EXAMPLE), "--config", str(path)]) == 0
    return path


@pytest.fixture
def private_config(tmp_path) -> Path:
    """A demo configuration: agencies on loopback allowed (and so plain http)."""
    directory = tmp_path / "demo"
    directory.mkdir()
    path = make_config(directory, "allow_private_endpoints = true")
    assert main(["procedure", "import", str(EXAMPLE), "--config", str(path)]) == 0
    return path


def document(**changes) -> dict:
    doc = {
        "code": "000.00.23.H38",
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": "https://motcua.soxaydung.example.vn/api",
        "wsdl": None,
        "procedures": ["1.009794"],
        "auth": {"type": "bearer", "token": "env:SXD_OUTBOUND_TOKEN"},
        "status_updates": {"mode": "callback"},
        "mapping": None,
    }
    doc.update(changes)
    return doc


def write_doc(directory: Path, doc: dict, name: str = "agency.json") -> Path:
    path = directory / name
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dvc-gateway: error: ")
    assert "Traceback" not in err
    return lines[0]


def listed(capsys, config: Path) -> list[dict]:
    code, out, _ = run(capsys, "agency", "list", "--json", "--config", str(config))
    assert code == 0
    return json.loads(out)


# --- db and procedures ------------------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database(tmp_path, capsys):
    path = make_config(tmp_path)
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(path))
    assert code == 0 and "up to date" in out
    assert (tmp_path / "var" / "gw.db").exists()
    assert run(capsys, "db", "upgrade", "--config", str(path))[0] == 0


def test_procedure_import_is_an_upsert(tmp_path, capsys):
    path = make_config(tmp_path)
    code, out, _ = run(capsys, "procedure", "import", str(EXAMPLE), "--config", str(path))
    assert code == 0 and out.strip().endswith("3 created, 0 updated, 0 unchanged")
    changed = json.loads(EXAMPLE.read_text("utf-8"))
    changed[0]["processing_days"] = 20
    changed_file = tmp_path / "changed.json"
    changed_file.write_text(json.dumps(changed, ensure_ascii=False), "utf-8")
    code, out, _ = run(capsys, "procedure", "import", str(changed_file), "--config", str(path))
    assert code == 0 and out.strip().endswith("0 created, 1 updated, 2 unchanged")
    code, out, _ = run(capsys, "procedure", "list", "--json", "--config", str(path))
    entries = {entry["code"]: entry for entry in json.loads(out)}
    assert sorted(entries) == ["1.001193", "1.009794", "2.001610"]
    assert entries["1.009794"]["processing_days"] == 20
    assert entries["1.009794"]["fees"] == [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000}]
    code, out, _ = run(capsys, "procedure", "list", "--config", str(path))
    assert code == 0 and "Cấp giấy phép xây dựng nhà ở riêng lẻ" in out and "150.000" in out


def test_procedure_import_from_the_configured_path(tmp_path, capsys):
    (tmp_path / "catalogue.json").write_text(EXAMPLE.read_text("utf-8"), "utf-8")
    path = make_config(tmp_path, extra='[catalogue]\npath = "catalogue.json"\n')
    code, out, _ = run(capsys, "procedure", "import", "--config", str(path))
    assert code == 0 and "3 created" in out


def test_procedure_import_refusal_is_one_line_and_imports_nothing(tmp_path, capsys):
    path = make_config(tmp_path)
    bad = json.loads(EXAMPLE.read_text("utf-8"))
    bad[2]["fees"][0]["amount"] = 0.5
    bad_file = tmp_path / "bad.json"
    bad_file.write_text(json.dumps(bad, ensure_ascii=False), "utf-8")
    code, _, err = run(capsys, "procedure", "import", str(bad_file), "--config", str(path))
    assert code == 2
    assert one_error_line(err).endswith(f"{bad_file}: entry 2 (1.001193): fees[0].amount: must be an integer (got 0.5)")
    code, out, _ = run(capsys, "procedure", "list", "--json", "--config", str(path))
    assert json.loads(out) == []


def test_procedure_import_without_a_file(tmp_path, capsys):
    code, _, err = run(capsys, "procedure", "import", "--config", str(make_config(tmp_path)))
    assert code == 2 and "give FILE or set [catalogue] path" in one_error_line(err)


# --- agency: the round trip -------------------------------------------------------------------------------------------


def test_register_list_show_replace_remove(tmp_path, config, capsys):
    file = write_doc(tmp_path, document())
    code, out, _ = run(capsys, "agency", "register", "--file", str(file), "--config", str(config))
    assert code == 0
    assert out.strip() == "registered 000.00.23.H38 (Sở Xây dựng): rest https://motcua.soxaydung.example.vn/api"
    assert listed(capsys, config) == [document()]

    code, out, _ = run(capsys, "agency", "show", "000.00.23.H38", "--json", "--config", str(config))
    assert code == 0 and json.loads(out) == document()
    code, out, _ = run(capsys, "agency", "show", "000.00.23.H38", "--config", str(config))
    assert code == 0 and "Sở Xây dựng" in out and "token=env:SXD_OUTBOUND_TOKEN" in out
    code, out, _ = run(capsys, "agency", "list", "--config", str(config))
    assert code == 0 and "000.00.23.H38" in out and "1.009794" in out

    code, _, err = run(capsys, "agency", "register", "--file", str(file), "--config", str(config))
    assert code == 2
    assert one_error_line(err).endswith(
        "agency 000.00.23.H38 is already registered (replace it explicitly): use --replace to update it"
    )

    renamed = write_doc(tmp_path, document(name="Sở Xây dựng tỉnh Hà Tĩnh"), "renamed.json")
    code, out, _ = run(capsys, "agency", "register", "--file", str(renamed), "--replace", "--config", str(config))
    assert code == 0 and out.startswith("updated 000.00.23.H38 (Sở Xây dựng tỉnh Hà Tĩnh)")
    assert [a["name"] for a in listed(capsys, config)] == ["Sở Xây dựng tỉnh Hà Tĩnh"]

    code, out, _ = run(capsys, "agency", "remove", "000.00.23.H38", "--config", str(config))
    assert code == 0 and out.strip() == "removed 000.00.23.H38"
    assert listed(capsys, config) == []
    for argv in (["remove", "000.00.23.H38"], ["show", "000.00.23.H38"]):
        code, _, err = run(capsys, "agency", *argv, "--config", str(config))
        assert code == 2 and one_error_line(err).endswith("agency 000.00.23.H38 is not registered")


def test_register_a_toml_document(tmp_path, config, capsys, monkeypatch):
    # No SOAP server here: the WSDL check (tests/test_soap_end_to_end.py) is skipped.
    monkeypatch.setattr("gateway.commands.agency.endpoint_checker", lambda settings: lambda registration: None)
    file = tmp_path / "stp.toml"
    file.write_text(
        'code = "000.00.10.H38"\nname = "Sở Kế hoạch và Đầu tư"\nprotocol = "soap"\n'
        'wsdl = "https://motcua.soxaydung.example.vn/MotCua?wsdl"\nprocedures = ["2.001610"]\n'
        '[auth]\ntype = "basic"\nusername = "lgsp"\npassword = "file:/run/secrets/stp"\n'
        '[status_updates]\nmode = "poll"\ninterval_seconds = 300\n',
        "utf-8",
    )
    code, out, _ = run(capsys, "agency", "register", "--file", str(file), "--config", str(config))
    assert code == 0 and out.startswith("registered 000.00.10.H38 (Sở Kế hoạch và Đầu tư): soap")
    [stored] = listed(capsys, config)
    assert stored["status_updates"] == {"mode": "poll", "interval_seconds": 300}
    assert stored["auth"]["password"] == "file:/run/secrets/stp"


# --- agency: refusals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            document(endpoint="https://169.254.169.254/"),
            "endpoint: refusing to connect to 169.254.169.254: link-local or cloud metadata address",
        ),
        (
            document(endpoint="https://127.0.0.1:9000/"),
            "endpoint: refusing to connect to 127.0.0.1: loopback address "
            "(allowed only with [registry] allow_private_endpoints = true)",
        ),
        (
            document(endpoint="https://localhost:9000/"),
            "endpoint: refusing to connect to localhost (127.0.0.1): loopback address",
        ),
        (
            document(endpoint="http://motcua.soxaydung.example.vn/api"),
            "endpoint: must use https (plain http only with [registry] allow_insecure_http = true)",
        ),
        (
            document(auth={"type": "bearer", "token": "eyJhbGciOi.inline"}),
            "auth.token: inline secret refused: give an env:NAME or file:PATH reference",
        ),
        (document(protocol="soap", endpoint=None), "wsdl: required for protocol soap"),
        (document(procedures=["9.999999"]), "procedures: not in the procedure catalogue: 9.999999 (import it first)"),
        (document(code="SXD-1"), "code: 'SXD-1' is not an agency code"),
    ],
)
def test_register_refusals(tmp_path, config, capsys, doc, message):
    file = write_doc(tmp_path, doc)
    code, _, err = run(capsys, "agency", "register", "--file", str(file), "--config", str(config))
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"dvc-gateway: error: {file}: registration refused: ")
    assert message in line
    assert "eyJhbGciOi.inline" not in line
    assert listed(capsys, config) == []


def test_metadata_refused_even_when_private_endpoints_are_allowed(tmp_path, private_config, capsys):
    file = write_doc(tmp_path, document(endpoint="http://169.254.169.254/"))
    code, _, err = run(capsys, "agency", "register", "--file", str(file), "--config", str(private_config))
    assert code == 2 and "link-local or cloud metadata address" in one_error_line(err)


def test_loopback_accepted_with_allow_private_endpoints(tmp_path, private_config, capsys):
    file = write_doc(tmp_path, document(endpoint="http://127.0.0.1:9000/"))
    code, out, _ = run(capsys, "agency", "register", "--file", str(file), "--config", str(private_config))
    assert code == 0 and "http://127.0.0.1:9000/" in out


def test_allow_private_endpoints_from_the_environment(tmp_path, config, capsys, monkeypatch):
    monkeypatch.setenv("DVC_GATEWAY_REGISTRY__ALLOW_PRIVATE_ENDPOINTS", "true")
    file = write_doc(tmp_path, document(endpoint="http://127.0.0.1:9000/"))
    assert run(capsys, "agency", "register", "--file", str(file), "--config", str(config))[0] == 0


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080/", "http://localhost:8080/api"])
def test_the_gateways_own_address_is_refused(tmp_path, private_config, capsys, endpoint):
    file = write_doc(tmp_path, document(endpoint=endpoint))
    code, _, err = run(capsys, "agency", "register", "--file", str(file), "--config", str(private_config))
    assert code == 2 and ":8080 is the gateway's own address ([server] host/port)" in one_error_line(err)


def test_inline_secret_accepted_when_strict_secrets_is_off(tmp_path, capsys):
    path = make_config(tmp_path, "strict_secrets = false")
    assert main(["procedure", "import", str(EXAMPLE), "--config", str(path)]) == 0
    file = write_doc(tmp_path, document(auth={"type": "bearer", "token": "inline-token"}))
    assert run(capsys, "agency", "register", "--file", str(file), "--config", str(path))[0] == 0
    code, out, _ = run(capsys, "agency", "show", "000.00.23.H38", "--config", str(path))
    assert code == 0 and "token=(inline secret)" in out and "inline-token" not in out


def test_a_missing_registration_file(tmp_path, config, capsys):
    missing = tmp_path / "missing.json"
    code, _, err = run(capsys, "agency", "register", "--file", str(missing), "--config", str(config))
    assert code == 2 and one_error_line(err).endswith(f"{missing}: no such file")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["agency", "register"], "the following arguments are required: --file"),
        (["agency", "frobnicate"], "invalid choice: 'frobnicate'"),
        (["agency"], "the following arguments are required: ACTION"),
        (["procedure", "list", "--xml"], "unrecognized arguments: --xml"),
        (["db"], "the following arguments are required: ACTION"),
    ],
)
def test_usage_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in one_error_line(err)


def test_bad_configuration(tmp_path, capsys):
    path = make_config(tmp_path, 'allow_private_endpoints = "yes"')
    file = write_doc(tmp_path, document())
    code, _, err = run(capsys, "agency", "register", "--file", str(file), "--config", str(path))
    assert code == 2 and one_error_line(err).endswith("[registry] allow_private_endpoints: must be true or false")


def test_bad_database_url(tmp_path, capsys):
    path = tmp_path / "gw.toml"
    path.write_text('[database]\nurl = "mysql://db/gateway"\n', "utf-8")
    code, _, err = run(capsys, "agency", "list", "--config", str(path))
    assert code == 2 and "unsupported database 'mysql'" in one_error_line(err)


# --- a real process ---------------------------------------------------------------------------------------------------


def test_python_dash_m_gateway_agency_list(tmp_path, private_config, capsys):
    file = write_doc(tmp_path, document(endpoint="http://127.0.0.1:9000/"))
    assert run(capsys, "agency", "register", "--file", str(file), "--config", str(private_config))[0] == 0
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "agency", "list", "--json", "--config", str(private_config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [a["code"] for a in json.loads(result.stdout)] == ["000.00.23.H38"]
    assert result.stderr == ""


# --- agency check: a REST endpoint on loopback ------------------------------------------------------------------------


def _page(status: int, media_type: str = "text/html"):
    """An ASGI app answering every request with ``status`` and a page (a web server, not an agency's service)."""
    from starlette.responses import Response

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await Response("<html><body>Not here</body></html>", status, media_type=media_type)(scope, receive, send)

    return app


def _register_and_check(tmp_path, config, capsys, endpoint: str, **changes) -> tuple[int, str, str]:
    doc = document(endpoint=endpoint, auth={"type": "none"}, **changes)
    file = write_doc(tmp_path, doc)
    assert run(capsys, "agency", "register", "--file", str(file), "--replace", "--config", str(config))[0] == 0
    return run(capsys, "agency", "check", "000.00.23.H38", "--config", str(config))


def test_check_accepts_the_reference_service(tmp_path, private_config, capsys):
    from gateway.simulators.agency import create_app
    from tests.servers import ServerThread

    with ServerThread(create_app()) as agency:
        code, out, err = _register_and_check(tmp_path, private_config, capsys, agency.base_url)
    assert code == 0, err
    assert out.startswith("000.00.23.H38 (rest ") and "OK: GET " in out and "HTTP 404" in out
    assert "unknown dossier" in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        (_page(404), "HTTP 404 (text/html): no agency service"),
        (_page(404, "text/plain"), "HTTP 404 (text/plain): no agency service"),
        (_page(410), "HTTP 410"),
        (_page(200), "HTTP 200 (text/html): no agency service"),  # a login page is not the service
        (_page(302), "HTTP 302"),
        (_page(503), "HTTP 503 (text/html): a server error"),
    ],
)
def test_check_fails_where_no_agency_service_answers(tmp_path, private_config, capsys, answer, shown):
    from tests.servers import ServerThread

    with ServerThread(answer) as server:
        code, out, err = _register_and_check(tmp_path, private_config, capsys, server.base_url + "/api")
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert "check failed: GET " in line and shown in line


def test_check_fails_on_a_wrong_path_and_refused_credentials(tmp_path, private_config, capsys, monkeypatch):
    from gateway.simulators.agency import create_app
    from tests.servers import ServerThread

    monkeypatch.setenv("SXD_OUTBOUND_TOKEN", "not-the-token")
    with ServerThread(create_app(token="the-token")) as agency:
        code, _, err = _register_and_check(tmp_path, private_config, capsys, agency.base_url + "/wrong/path")
        assert code == 1 and "/wrong/path/dossiers/" in one_error_line(err) and "HTTP 404" in err
        bearer = {"auth": {"type": "bearer", "token": "env:SXD_OUTBOUND_TOKEN"}}
        file = write_doc(tmp_path, document(endpoint=agency.base_url, **bearer))
        registered = run(
            capsys, "agency", "register", "--file", str(file), "--replace", "--config", str(private_config)
        )
        assert registered[0] == 0
        code, _, err = run(capsys, "agency", "check", "000.00.23.H38", "--config", str(private_config))
        assert code == 1 and "HTTP 401" in one_error_line(err) and "credentials refused" in err
        monkeypatch.setenv("SXD_OUTBOUND_TOKEN", "the-token")
        code, out, err = run(capsys, "agency", "check", "000.00.23.H38", "--config", str(private_config))
        assert code == 0 and "OK: GET " in out, err


def test_check_follows_the_mapped_status_path(tmp_path, private_config, capsys):
    from gateway.simulators.agency import create_app
    from tests.servers import ServerThread

    mapping = {"paths": {"status": "/hoso/{code}/trangthai"}}
    with ServerThread(create_app(mapping=mapping)) as agency:
        code, out, err = _register_and_check(tmp_path, private_config, capsys, agency.base_url, mapping=mapping)
    assert code == 0 and "/hoso/000.00.23.H38-000101-0000/trangthai" in out, err


def test_check_of_an_unreachable_endpoint(tmp_path, private_config, capsys):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, _, err = _register_and_check(tmp_path, private_config, capsys, f"http://127.0.0.1:{port}/api")
    assert code == 1 and "cannot reach" in one_error_line(err)


# --- agency remove: open dossiers -------------------------------------------------------------------------------------


def _add_dossiers(config: Path, *statuses: str) -> None:
    import tomllib

    from gateway.store.database import Database
    from gateway.store.models import Dossier

    url = tomllib.loads(config.read_text("utf-8"))["database"]["url"]
    db = Database.connect(url)
    try:
        with db.unit_of_work() as session:
            for number, status in enumerate(statuses, 1):
                code = f"000.00.23.H38-261123-{number:04d}"
                session.add(
                    Dossier(
                        code=code,
                        procedure_code="1.009794",
                        agency_code="000.00.23.H38",
                        lead_agency_code="000.00.23.H38",
                        status=status,
                        applicant={"kind": "citizen", "full_name": "Nguyễn Văn A"},
                    )
                )
    finally:
        db.dispose()


def test_remove_is_refused_while_the_agency_has_open_dossiers(tmp_path, config, capsys):
    from gateway.domain.status import TERMINAL_STATUSES

    file = write_doc(tmp_path, document())
    assert run(capsys, "agency", "register", "--file", str(file), "--config", str(config))[0] == 0
    finished = sorted(TERMINAL_STATUSES)[0].value
    _add_dossiers(config, "processing", "submitted", finished)

    code, out, err = run(capsys, "agency", "remove", "000.00.23.H38", "--config", str(config))
    assert code == 1 and out == ""
    assert one_error_line(err) == (
        "dvc-gateway: error: agency 000.00.23.H38 not removed: it has 2 open dossier(s); "
        "remove it with --force if you must"
    )
    assert [a["code"] for a in listed(capsys, config)] == ["000.00.23.H38"]

    code, out, _ = run(capsys, "agency", "remove", "000.00.23.H38", "--force", "--config", str(config))
    assert code == 0 and out.strip() == "removed 000.00.23.H38 (2 open dossier(s) left without it)"
    assert listed(capsys, config) == []


def test_list_shows_bracketed_names_as_is(tmp_path, config, capsys):
    file = write_doc(tmp_path, document(name="Sở Xây dựng [thí điểm] [b]"))
    assert run(capsys, "agency", "register", "--file", str(file), "--config", str(config))[0] == 0
    code, out, _ = run(capsys, "agency", "list", "--config", str(config))
    assert code == 0 and "[thí điểm] [b]" in out
