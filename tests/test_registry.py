"""The agency endpoint registry: the registration document's checks, SSRF refusals, secrets, storage."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path

import pytest

from gateway import registry, registry_urls
from gateway.config import ConfigError
from gateway.registry import (
    AgencyExistsError,
    Registration,
    RegistrationError,
    RegistrySettings,
    get_agency,
    list_agencies,
    load_registration_file,
    register,
    remove_agency,
    validate_registration,
)
from gateway.settings import Settings

KNOWN = {"1.009794", "2.001610"}
STRICT = RegistrySettings()
PRIVATE = RegistrySettings(allow_private_endpoints=True)

#: Names the tests resolve without a network: a public agency host, and names pointing where they must not.
FAKE_DNS = {
    "motcua.soxaydung.example.vn": "14.160.32.10",
    "soap.sotuphap.example.vn": "14.160.32.11",
    "sso.example.vn": "14.160.32.12",
    "intranet.example.vn": "10.20.30.40",
    "metadata.example.vn": "169.254.169.254",
    "gateway.example.vn": "14.160.32.99",
}

_real_getaddrinfo = socket.getaddrinfo


def _fake_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if isinstance(host, str) and host in FAKE_DNS:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (FAKE_DNS[host], port or 0))]
    if isinstance(host, str) and host.endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real_getaddrinfo(host, port, family, type, proto, flags)


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo)


def rest(**changes) -> dict:
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


def soap(**changes) -> dict:
    doc = {
        "code": "000.00.15.H38",
        "name": "Sở Tư pháp",
        "protocol": "soap",
        "wsdl": "https://soap.sotuphap.example.vn/MotCua?wsdl",
        "procedures": ["2.001610"],
        "auth": {"type": "basic", "username": "lgsp", "password": "file:/run/secrets/stp"},
        "status_updates": {"mode": "poll", "interval_seconds": 300},
    }
    doc.update(changes)
    return doc


def validate(doc: dict, settings: RegistrySettings = STRICT, known: set[str] = KNOWN) -> Registration:
    return validate_registration(doc, settings=settings, known_procedures=known)


def refused(doc: dict, settings: RegistrySettings = STRICT, known: set[str] = KNOWN) -> RegistrationError:
    with pytest.raises(RegistrationError) as caught:
        validate(doc, settings, known)
    error = caught.value
    assert "\n" not in str(error)
    assert all(set(e) == {"field", "message"} for e in error.errors)
    return error


def messages(error: RegistrationError) -> dict[str, str]:
    return {e["field"]: e["message"] for e in error.errors}


# --- accepted documents -----------------------------------------------------------------------------------------------


def test_the_design_example_is_accepted_and_normalised():
    reg = validate(rest())
    assert reg.code == "000.00.23.H38" and reg.protocol == "rest"
    assert reg.auth.type == "bearer" and reg.auth.token == "env:SXD_OUTBOUND_TOKEN"
    assert reg.document() == rest()  # already in the stored form: every field, secrets as references


def test_defaults_for_auth_and_status_updates():
    doc = rest()
    for key in ("auth", "status_updates", "wsdl", "mapping"):
        del doc[key]
    document = validate(doc).document()
    assert document["auth"] == {"type": "none"}
    assert document["status_updates"] == {"mode": "callback"}


def test_soap_with_wsse_auth():
    auth = {"type": "wsse", "username": "lgsp", "password": "env:STP_WSSE", "digest": True}
    assert validate(soap(auth=auth)).document()["auth"] == auth


def test_soap_with_wsdl_poll_and_mapping():
    mapping = {"operations": {"deliver": "NhanHoSo"}, "fields": {"MaHoSo": "SoHoSo"}}
    reg = validate(soap(mapping=mapping, endpoint="https://soap.sotuphap.example.vn/MotCua"))
    assert reg.wsdl.endswith("?wsdl")
    assert reg.status_updates.interval_seconds == 300
    assert reg.mapping == mapping


@pytest.mark.parametrize(
    "auth",
    [
        {"type": "none"},
        {"type": "basic", "username": "lgsp", "password": "env:STP_PASSWORD"},
        {"type": "bearer", "token": "file:/run/secrets/token"},
        {
            "type": "oauth2",
            "token_url": "https://sso.example.vn/oauth/token",
            "client_id": "dvc-gateway",
            "client_secret": "env:SSO_SECRET",
            "scope": "motcua",
        },
        {"type": "mtls", "cert": "/etc/dvc/client.pem", "key": "/etc/dvc/client.key"},
        {"type": "mtls", "cert": "/etc/dvc/client.pem", "key": "/etc/dvc/client.key", "key_password": "env:KEY_PW"},
    ],
)
def test_every_auth_type(auth):
    assert validate(rest(auth=auth)).auth.type == auth["type"]


# --- refusals of shape ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (soap(wsdl=None), "wsdl", "required for protocol soap"),
        (rest(endpoint=None), "endpoint", "required for protocol rest"),
        (rest(wsdl="https://motcua.soxaydung.example.vn/api?wsdl"), "wsdl", "only for protocol soap"),
        (rest(code="Sở Xây dựng"), "code", "is not an agency code"),
        (rest(code="000..23.H38"), "code", "is not an agency code"),
        (rest(name=""), "name", "must not be empty"),
        (rest(protocol="grpc"), "protocol", "input should be 'rest' or 'soap' (got 'grpc')"),
        (rest(procedures=[]), "procedures", "must not be empty"),
        (rest(procedures=["1.009794", "1.009794"]), "procedures", "duplicate procedure 1.009794"),
        (rest(endpont="https://x.example.vn"), "endpont", "unknown field"),
        (
            rest(auth={"type": "apikey"}),
            "auth.type",
            "must be one of none, basic, bearer, oauth2, mtls, wsse (got 'apikey')",
        ),
        (rest(auth={"type": "wsse", "username": "u", "password": "env:P"}), "auth.type", "only for protocol soap"),
        (soap(mapping={"operations": {"TiepNhanHoSo": "X"}}), "mapping", "unknown operation 'TiepNhanHoSo'"),
        (rest(auth={"token": "env:X"}), "auth.type", "required field is missing"),
        (rest(auth={"type": "bearer"}), "auth.token", "required field is missing"),
        (rest(auth={"type": "bearer", "token": "env:X", "user": "a"}), "auth.user", "unknown field"),
        (rest(auth={"type": "basic", "password": "env:X"}), "auth.username", "required field is missing"),
        (rest(status_updates={"mode": "push"}), "status_updates.mode", "input should be 'callback' or 'poll'"),
        (rest(status_updates={"mode": "poll"}), "status_updates.interval_seconds", "required for mode poll"),
        (
            rest(status_updates={"mode": "poll", "interval_seconds": 10}),
            "status_updates.interval_seconds",
            "greater than or equal to 30",
        ),
        (
            rest(status_updates={"mode": "poll", "interval_seconds": 86401}),
            "status_updates.interval_seconds",
            "less than or equal to 86400",
        ),
        (
            rest(status_updates={"mode": "poll", "interval_seconds": 60.0}),
            "status_updates.interval_seconds",
            "must be an integer",
        ),
        (
            rest(status_updates={"mode": "callback", "interval_seconds": 60}),
            "status_updates.interval_seconds",
            "only for mode poll",
        ),
        (rest(mapping=["x"]), "mapping", "must be a table/object"),
    ],
)
def test_shape_refusals(doc, field, message):
    error = refused(doc)
    assert message in messages(error).get(field, ""), error.errors


def test_not_an_object_is_refused():
    assert "expected a JSON object/TOML table, got a list" in str(refused(["000.00.23.H38"]))  # type: ignore[arg-type]


def test_unknown_procedure_is_refused():
    error = refused(rest(procedures=["1.009794", "9.999999"]))
    assert messages(error) == {"procedures": "not in the procedure catalogue: 9.999999 (import it first)"}


def test_every_problem_is_reported_on_one_line():
    error = refused(
        rest(endpoint="http://169.254.169.254/", auth={"type": "bearer", "token": "s3cr3t"}, procedures=["x"])
    )
    fields = [e["field"] for e in error.errors]
    assert fields == ["auth.token", "endpoint", "endpoint", "procedures"]
    assert str(error).count("; ") == 3
    assert "s3cr3t" not in str(error)


# --- secrets ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "bearer", "token": "eyJhbGciOi.secret"}, "auth.token"),
        ({"type": "basic", "username": "lgsp", "password": "mat-khau"}, "auth.password"),
        (
            {"type": "oauth2", "token_url": "https://sso.example.vn/t", "client_id": "c", "client_secret": "abc"},
            "auth.client_secret",
        ),
        ({"type": "mtls", "cert": "c.pem", "key": "k.pem", "key_password": "pw"}, "auth.key_password"),
    ],
)
def test_inline_secrets_refused_under_strict_secrets(auth, field):
    error = refused(rest(auth=auth))
    assert messages(error) == {
        field: "inline secret refused: give an env:NAME or file:PATH reference ([registry] strict_secrets = true)"
    }
    relaxed = RegistrySettings(strict_secrets=False)
    assert validate(rest(auth=auth), relaxed).auth.type == auth["type"]


def test_a_secret_of_the_wrong_type_is_not_echoed():
    error = refused(rest(auth={"type": "bearer", "token": 123456789}))
    assert messages(error) == {"auth.token": "must be a string"}


@pytest.mark.parametrize(
    ("secret", "message"), [("env:", "does not name an environment variable"), ("file:", "without a path")]
)
def test_malformed_references_refused_even_when_not_strict(secret, message):
    error = refused(rest(auth={"type": "bearer", "token": secret}), RegistrySettings(strict_secrets=False))
    assert message in messages(error)["auth.token"]


# --- URLs and server-side request forgery -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://motcua.soxaydung.example.vn/api", "URL scheme must be https or http, got 'ftp'"),
        ("file:///etc/passwd", "URL scheme must be https or http, got 'file'"),
        ("motcua.soxaydung.example.vn/api", "URL scheme must be https or http, got 'none'"),
        ("https://", "not a valid URL: no host"),
        ("https://motcua.soxaydung.example.vn:99999/api", "not a valid URL: Port out of range"),
        ("https://motcua.soxaydung.example.vn:abc/api", "not a valid URL"),
        ("https://[::1/api", "not a valid URL"),
        ("https://motcua.soxaydung.example.vn/a pi", "contains spaces or control characters"),
        ("", "must not be empty"),
        (
            "http://motcua.soxaydung.example.vn/api",
            "must use https (plain http only with [registry] allow_insecure_http",
        ),
        ("https://user:pw@motcua.soxaydung.example.vn/api", "credentials in the URL are refused"),
        ("https://nowhere.invalid/api", "cannot resolve nowhere.invalid"),
    ],
)
def test_bad_urls_are_refused(url, message):
    error = refused(rest(endpoint=url))
    assert message in messages(error)["endpoint"], error.errors


def test_metadata_address_is_always_refused():
    for settings in (STRICT, PRIVATE):
        error = refused(rest(endpoint="http://169.254.169.254/"), settings)
        endpoint = [e["message"] for e in error.errors if e["field"] == "endpoint"]
        assert "refusing to connect to 169.254.169.254: link-local or cloud metadata address" in endpoint
        assert not any("allow_private_endpoints" in m for m in endpoint)


@pytest.mark.parametrize(
    "url",
    ["https://metadata.example.vn/", "https://[fe80::1]/", "https://2852039166/", "https://[::ffff:169.254.169.254]/"],
)
def test_metadata_in_disguise_is_always_refused(url):
    error = refused(rest(endpoint=url), PRIVATE)
    assert "link-local or cloud metadata address" in messages(error)["endpoint"]


def test_loopback_refused_by_default_and_accepted_with_allow_private_endpoints():
    error = refused(rest(endpoint="http://127.0.0.1:9000/"))
    endpoint = [e["message"] for e in error.errors if e["field"] == "endpoint"]
    assert endpoint == [
        "must use https (plain http only with [registry] allow_insecure_http = true)",
        "refusing to connect to 127.0.0.1: loopback address"
        " (allowed only with [registry] allow_private_endpoints = true)",
    ]
    assert validate(rest(endpoint="http://127.0.0.1:9000/"), PRIVATE).endpoint == "http://127.0.0.1:9000/"


def test_a_name_resolving_to_loopback_is_refused_by_default():
    error = refused(rest(endpoint="https://localhost:9000/api"))
    assert "refusing to connect to localhost" in messages(error)["endpoint"]
    assert "loopback address" in messages(error)["endpoint"]
    assert validate(rest(endpoint="https://localhost:9000/api"), PRIVATE).endpoint.startswith("https://localhost")


@pytest.mark.parametrize("url", ["https://10.1.2.3/api", "https://intranet.example.vn/api", "https://[::1]:9000/"])
def test_private_addresses_and_names_refused_by_default(url):
    error = refused(rest(endpoint=url))
    assert "allowed only with [registry] allow_private_endpoints = true" in messages(error)["endpoint"]
    assert validate(rest(endpoint=url), PRIVATE).endpoint == url


def test_wsdl_and_token_url_are_checked_too():
    error = refused(
        soap(
            wsdl="https://169.254.169.254/latest/meta-data?wsdl",
            auth={
                "type": "oauth2",
                "token_url": "https://127.0.0.1/token",
                "client_id": "gw",
                "client_secret": "env:S",
            },
        )
    )
    assert "link-local or cloud metadata address" in messages(error)["wsdl"]
    assert "loopback address" in messages(error)["auth.token_url"]


def test_http_follows_allow_private_endpoints_unless_configured():
    assert PRIVATE.allow_insecure_http is True
    assert STRICT.allow_insecure_http is False
    tls_only = RegistrySettings(allow_private_endpoints=True, allow_insecure_http=False)
    error = refused(rest(endpoint="http://127.0.0.1:9000/"), tls_only)
    assert messages(error)["endpoint"].startswith("must use https")
    public_http = RegistrySettings(allow_insecure_http=True)
    assert validate(rest(endpoint="http://motcua.soxaydung.example.vn/api"), public_http)


# --- the gateway's own address ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/", "http://localhost:8080/api", "http://127.1:8080/", "http://[::ffff:127.0.0.1]:8080/"],
)
def test_the_gateways_own_address_is_refused(url):
    error = refused(rest(endpoint=url), PRIVATE)
    assert "is the gateway's own address ([server] host/port)" in messages(error)["endpoint"]


def test_another_port_on_the_gateways_host_is_not_the_gateway():
    assert validate(rest(endpoint="http://127.0.0.1:9000/"), PRIVATE)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/", "http://[::1]:8080/", "http://0.0.0.0:8080/"])
def test_binding_all_addresses_means_every_local_address(url):
    settings = RegistrySettings(allow_private_endpoints=True, server_host="0.0.0.0", server_port=8080)
    error = refused(rest(endpoint=url), settings)
    assert "gateway's own address" in messages(error)["endpoint"]


def test_binding_all_addresses_covers_the_hosts_public_address(monkeypatch):
    own = {ipaddress.ip_address("14.160.32.10")}
    monkeypatch.setattr(registry_urls, "_local_addresses", lambda: own)
    settings = RegistrySettings(server_host="0.0.0.0", server_port=443)
    error = refused(rest(endpoint="https://motcua.soxaydung.example.vn/api"), settings)
    assert messages(error)["endpoint"] == (
        "motcua.soxaydung.example.vn:443 is the gateway's own address ([server] host/port)"
    )


def test_a_public_server_name_is_the_gateway_by_name_or_address():
    settings = RegistrySettings(server_host="gateway.example.vn", server_port=443)
    for url in ("https://gateway.example.vn/api", "https://14.160.32.99/api"):
        assert "gateway's own address" in messages(refused(rest(endpoint=url), settings))["endpoint"]
    assert validate(rest(), settings)


# --- settings ---------------------------------------------------------------------------------------------------------


def test_settings_from_the_registry_and_server_sections():
    assert RegistrySettings.of(Settings()) == RegistrySettings()
    raw = {"registry": {"allow_private_endpoints": True}, "server": {"host": "0.0.0.0", "port": 9090}}
    settings = RegistrySettings.of(Settings.from_raw(raw, Path.cwd()))
    assert settings.allow_private_endpoints and settings.allow_insecure_http and settings.strict_secrets
    assert (settings.server_host, settings.server_port) == ("0.0.0.0", 9090)
    explicit = {"registry": {"allow_private_endpoints": True, "allow_insecure_http": False}}
    assert RegistrySettings.of(Settings.from_raw(explicit, Path.cwd())).allow_insecure_http is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"registry": {"allow_private_endpoints": "yes"}},
            r"^\[registry\] allow_private_endpoints: must be true or false$",
        ),
        ({"registry": {"strict_secrets": 0}}, r"^\[registry\] strict_secrets: must be true or false$"),
        ({"registry": {"allow_private": True}}, r"^\[registry\] allow_private: unknown key"),
        ({"registry": {"wsdl_cache_dir": ""}}, r"^\[registry\] wsdl_cache_dir: must be a path"),
        ({"server": {"port": "8080"}}, r"^\[server\] port: must be a whole number$"),
        ({"server": {"port": 70000}}, r"^\[server\] port: must be at most 65535$"),
        ({"server": {"host": 1}}, r"^\[server\] host: must be a string$"),
    ],
)
def test_bad_settings(raw, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_raw(raw, Path.cwd())


# --- reaching a REST endpoint -----------------------------------------------------------------------------------------


def _answering(status: int, body: bytes, media_type: str):
    from starlette.responses import Response

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await Response(body, status, media_type=media_type)(scope, receive, send)

    return app


@pytest.mark.parametrize(
    ("status", "body", "media_type", "ok", "shown"),
    [
        (
            404,
            b'{"error": "not_found"}',
            "application/json",
            True,
            "answered HTTP 404 (application/json) for an unknown",
        ),
        (200, b'{"code": "x", "status": "received"}', "application/json", True, "answered HTTP 200"),
        (404, b"<h1>Not Found</h1>", "text/html", False, "answered HTTP 404 (text/html): no agency service"),
        (404, b"Not Found", "text/plain", False, "answered HTTP 404 (text/plain): no agency service"),
        (410, b'{"error": "gone"}', "application/json", False, "answered HTTP 410 (application/json)"),
        (405, b'{"error": "method"}', "application/json", False, "answered HTTP 405"),
        (200, b"<form>login</form>", "text/html", False, "answered HTTP 200 (text/html): no agency service"),
        (500, b'{"error": "boom"}', "application/json", False, "answered HTTP 500 (application/json): a server error"),
        (401, b'{"error": "token"}', "application/json", False, "answered HTTP 401 (application/json): credentials"),
    ],
)
def test_a_rest_check_passes_only_where_the_service_answers(status, body, media_type, ok, shown):
    import asyncio

    from tests.servers import ServerThread

    with ServerThread(_answering(status, body, media_type)) as server:
        reg = validate(rest(endpoint=server.base_url + "/api", auth={"type": "none"}), PRIVATE)
        result = asyncio.run(registry.check_endpoint(reg, settings=PRIVATE))
    assert result.ok is ok, result.message
    assert f"GET {server.base_url}/api/dossiers/000.00.23.H38-000101-0000 " in result.message
    assert shown in result.message and "\n" not in result.message


def test_a_rest_check_of_nothing_listening():
    import asyncio

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    reg = validate(rest(endpoint=f"http://127.0.0.1:{port}/api", auth={"type": "none"}), PRIVATE)
    result = asyncio.run(registry.check_endpoint(reg, settings=PRIVATE))
    assert not result.ok and result.message.startswith(f"cannot reach http://127.0.0.1:{port}/api: ")


# --- storage ----------------------------------------------------------------------------------------------------------


def test_register_list_show_replace_remove(db):
    first, second = validate(rest()), validate(soap())
    with db.unit_of_work() as session:
        assert register(session, first) is True
        assert register(session, second) is True
    with db.unit_of_work() as session:
        assert [r.code for r in list_agencies(session)] == ["000.00.15.H38", "000.00.23.H38"]
        assert get_agency(session, "000.00.23.H38") == first
        assert get_agency(session, "000.00.99.H38") is None
    renamed = validate(rest(name="Sở Xây dựng tỉnh Hà Tĩnh"))
    with db.unit_of_work() as session, pytest.raises(AgencyExistsError) as caught:
        register(session, renamed)
    assert caught.value.errors == [
        {"field": "code", "message": "agency 000.00.23.H38 is already registered (replace it explicitly)"}
    ]
    with db.unit_of_work() as session:
        assert register(session, renamed, replace=True) is False
    with db.unit_of_work() as session:
        assert get_agency(session, "000.00.23.H38").name == "Sở Xây dựng tỉnh Hà Tĩnh"
        assert remove_agency(session, "000.00.23.H38") is True
        assert remove_agency(session, "000.00.23.H38") is False
    with db.unit_of_work() as session:
        assert [r.code for r in list_agencies(session)] == ["000.00.15.H38"]


def test_the_stored_document_keeps_references_not_secrets(db, monkeypatch):
    monkeypatch.setenv("SXD_OUTBOUND_TOKEN", "the-real-token")
    with db.unit_of_work() as session:
        register(session, validate(rest()))
    from gateway.store.models import Agency

    with db.unit_of_work() as session:
        stored = session.get(Agency, "000.00.23.H38").document
    assert stored["auth"] == {"type": "bearer", "token": "env:SXD_OUTBOUND_TOKEN"}
    assert "the-real-token" not in json.dumps(stored)


# --- files ------------------------------------------------------------------------------------------------------------

TOML_DOC = """
code = "000.00.23.H38"
name = "Sở Xây dựng"
protocol = "rest"
endpoint = "https://motcua.soxaydung.example.vn/api"
procedures = ["1.009794"]
auth = { type = "bearer", token = "env:SXD_OUTBOUND_TOKEN" }
status_updates = { mode = "callback" }
"""


def test_json_and_toml_files_give_the_same_registration(tmp_path):
    as_json = tmp_path / "sxd.json"
    as_json.write_text(json.dumps(rest(), ensure_ascii=False), "utf-8")
    as_toml = tmp_path / "sxd.toml"
    as_toml.write_text(TOML_DOC, "utf-8")
    sniffed = tmp_path / "sxd.conf"
    sniffed.write_text(TOML_DOC, "utf-8")
    regs = [validate(load_registration_file(path)) for path in (as_json, as_toml, sniffed)]
    assert regs[0] == regs[1] == regs[2]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", "{", "not valid JSON"),
        ("a.json", "[]", "expected a JSON object, got a list"),
        ("a.json", '{"code": "a", "code": "b"}', "duplicate key 'code'"),
        ("a.json", '{"code": "a", "timeout_seconds": 1e999}', "the number 1e999 is out of range"),
        ("a.json", '{"code": "a\\u0000"}', r"code: holds the character U\+0000"),
        ("a.json", "[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("a.toml", "code = ", "not valid TOML"),
    ],
)
def test_unreadable_registration_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text, "utf-8")
    with pytest.raises(RegistrationError, match=message) as caught:
        load_registration_file(path)
    assert str(caught.value).startswith(str(path))


def test_missing_registration_file(tmp_path):
    with pytest.raises(RegistrationError, match="no such file"):
        load_registration_file(tmp_path / "none.json")
