"""Configuration: the TOML file, environment overrides, secret references, typed sections and one-line errors."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, SecretRef, parse_section, read_signing, resolve_secret
from gateway.sections import AuthSection, office_calendar
from gateway.settings import Settings, load_settings
from gateway.store.engine import make_engine

PAYMENT = {
    "base_url": "https://sandbox.vnpayment.example",
    "merchant_code": "DVCH38",
    "secret": "env:GW_TEST_PAYMENT_SECRET",
    "return_url": "https://dichvucong.example.gov.vn/thanh-toan",
}
POSTAL = {"base_url": "https://postal.example.vn/api", "secret": "file:postal-secret"}
NATIONAL = {
    "base_url": "https://dichvucong.gov.vn/lgsp",
    "username": "ht-lgsp",
    "password": "env:GW_TEST_PORTAL_PASSWORD",
    "dstcode": "H38",
    "madonvi": "000.00.00.H38",
}


def settings_of(raw: dict[str, Any], base_dir: Path = Path("/etc/dvc-gateway")) -> Settings:
    return Settings.from_raw(raw, base_dir)


def refused(raw: dict[str, Any], base_dir: Path = Path("/etc/dvc-gateway")) -> str:
    with pytest.raises(ConfigError) as caught:
        Settings.from_raw(raw, base_dir)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------------------------------------------------
# The file and the environment


def test_env_overrides_keys_with_toml_values(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_text('[server]\nport = 8080\n[signing]\ntrust_anchors = ["trust/root.pem"]\n')
    environ = {"DVC_GATEWAY_SERVER__PORT": "9090", "DVC_GATEWAY_SIGNING__ONLINE_REVOCATION": "true"}
    settings = load_settings(file, environ=environ)
    assert settings.server.port == 9090
    trust = settings.signing.trust_settings()
    assert trust.online_revocation is True
    assert trust.trust_anchors == (tmp_path / "trust/root.pem",)
    assert settings.base_dir == tmp_path
    assert settings.raw["server"] == {"port": 9090}


def test_env_override_string_that_is_not_toml() -> None:
    settings = load_settings(None, environ={"DVC_GATEWAY_DATABASE__URL": "sqlite:///x.db"})
    assert settings.database.url == f"sqlite:///{Path.cwd() / 'x.db'}"
    assert settings.base_dir == Path.cwd()


def test_other_variables_with_the_prefix_are_not_overrides() -> None:
    environ = {"DVC_GATEWAY_TEST_POSTGRES_URL": "postgresql://x", "DVC_GATEWAY_CONFIG": ""}
    assert load_settings(None, environ=environ) == Settings.from_raw({}, Path.cwd())


def test_config_file_from_environment_variable(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[server]\nhost = '10.0.0.5'\n")
    assert load_settings(None, environ={"DVC_GATEWAY_CONFIG": str(file)}).server.host == "10.0.0.5"


def test_defaults_without_any_file() -> None:
    settings = load_settings(None, environ={})
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8080)
    assert settings.database.url == f"sqlite:///{Path.cwd() / 'var' / 'gateway.db'}"
    assert settings.registry.wsdl_cache_dir == Path.cwd() / "var/wsdl-cache"
    assert settings.outbox.max_attempts == 8 and settings.poller.tick_seconds == 10.0
    assert settings.recording.mode == "off" and settings.recording.directory == Path.cwd() / "cassettes"
    assert settings.auth.tokens == () and settings.portal.webhook_url is None
    assert settings.payment is None and settings.postal is None and settings.national_portal is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[server\n", "not valid TOML"),
        ("[signing]\nonline_revocation = 'yes'\n", "[signing] online_revocation: must be true or false"),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(file, environ={})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_unknown_sections_and_keys_are_refused_naming_them() -> None:
    message = refused({"servr": {"port": 9000}})
    assert message.startswith("[servr] unknown section (known: alerts, auth,")
    assert refused({"server": {"prot": 9000}}).startswith("[server] prot: unknown key (known: event_loop, host,")
    assert refused({"auth": {"tokens": [{"token": "a" * 20, "role": "admin", "scope": "all"}]}}).startswith(
        "[auth] tokens[0].scope: unknown key"
    )
    assert refused({"recording": {"faults": [{"kind": "drop", "every": 2}]}}).startswith(
        "[recording] faults[0].every: unknown key"
    )


def test_unknown_environment_overrides_are_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"DVC_GATEWAY_SERVR__PORT": "9000"})
    message = str(caught.value)
    assert message.startswith("[servr] unknown section") and message.endswith("(from DVC_GATEWAY_SERVR__PORT)")
    with pytest.raises(ConfigError, match=r"^\[server\] prot: unknown key .*\(from DVC_GATEWAY_SERVER__PROT\)$"):
        load_settings(None, environ={"DVC_GATEWAY_SERVER__PROT": "9000"})
    with pytest.raises(
        ConfigError, match=r"^\[server\] port: must be a whole number \(from DVC_GATEWAY_SERVER__PORT\)"
    ):
        load_settings(None, environ={"DVC_GATEWAY_SERVER__PORT": "eighty"})


def test_an_override_into_a_value_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_text('server = "localhost"\n')
    with pytest.raises(ConfigError, match=r"DVC_GATEWAY_SERVER__PORT: \[server\] is not a table"):
        load_settings(file, environ={"DVC_GATEWAY_SERVER__PORT": "9000"})


def test_several_problems_are_one_line_naming_the_first() -> None:
    message = refused({"server": {"port": "80", "host": 1}})
    assert message.startswith("[server] ") and message.endswith("(and 1 more)")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"server": {"port": "8080"}}, "[server] port: must be a whole number"),
        ({"server": {"port": 70000}}, "[server] port: must be at most 65535"),
        ({"server": {"host": 1}}, "[server] host: must be a string"),
        ({"server": 8080}, "[server] must be a table"),
        ({"database": {"url": "mysql://db/gw"}}, "[database] url: unsupported database 'mysql'"),
        ({"registry": {"allow_private_endpoints": "yes"}}, "[registry] allow_private_endpoints: must be true or false"),
        ({"outbox": {"attempts": 0}}, "[outbox] attempts: must be at least 1"),
        ({"outbox": {"attempts": 2.5}}, "[outbox] attempts: must be a whole number"),
        (
            {"outbox": {"backoff_initial_seconds": 10, "backoff_max_seconds": 5}},
            "[outbox] backoff_max_seconds: must be at least backoff_initial_seconds (10)",
        ),
        ({"poller": {"tick_seconds": 0}}, "[poller] tick_seconds: must be greater than 0"),
        ({"signing": {"timeout_seconds": -1}}, "[signing] timeout_seconds: must be greater than 0"),
        ({"signing": {"crls": [1]}}, "[signing] crls: must be a path or a list of paths"),
        ({"portal": {"webhook_url": "portal.example.vn/hook"}}, "[portal] webhook_url: must be an absolute http://"),
        ({"recording": {"mode": "sometimes"}}, "[recording] mode: must be one of 'off', 'record' or 'replay'"),
        ({"recording": {"max_file_bytes": 10}}, "[recording] max_file_bytes: must be at least 1024"),
        ({"calendar": {"morning": "7h-11h"}}, '[calendar] morning: must be a time range "HH:MM-HH:MM"'),
        ({"reports": {"schedule_day": 0}}, "[reports] schedule_day: must be at least 1"),
        ({"questions": {"answer_within_days": "7"}}, "[questions] answer_within_days: must be a whole number"),
        ({"alerts": {"webhook_url": "ftp://alerts"}}, "[alerts] webhook_url: must be an absolute http://"),
        ({"sms": {"timeout_seconds": 0}}, "[sms] timeout_seconds: must be greater than 0"),
    ],
)
def test_bad_values_are_one_line_naming_section_and_key(raw: dict[str, Any], message: str) -> None:
    assert refused(raw).startswith(message)


def test_replay_needs_offline_revocation() -> None:
    message = refused({"recording": {"mode": "replay"}, "signing": {"online_revocation": True}})
    assert message.startswith('[recording] mode: "replay" needs [signing] online_revocation = false')


def test_the_documented_keys_of_the_reserved_sections_are_accepted(tmp_path: Path) -> None:
    settings = settings_of(
        {
            "reports": {"schedule_day": 15, "directory": "reports"},
            "alerts": {"webhook_url": "https://alerts.example.vn/hook"},
            "questions": {"answer_within_days": 7},
            "sms": {"base_url": "https://sms.example.vn", "secret": "env:SMS_SECRET", "timeout_seconds": 5},
        },
        tmp_path,
    )
    assert settings.reports.directory == tmp_path / "reports" and settings.reports.schedule_day == 15
    assert settings.questions.answer_within_days == 7 and settings.sms.secret is not None


# ----------------------------------------------------------------------------------------------------------------------
# Paths


def test_paths_are_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "gw.toml"
    file.write_text(
        '[catalogue]\npath = "procedures.json"\n'
        '[registry]\nwsdl_cache_dir = "cache/wsdl"\n'
        '[signing]\ntrust_anchors = "trust/root.pem"\ncrls = ["/var/lib/crls", "crls/"]\n'
        '[recording]\ndirectory = "cassettes"\n'
    )
    settings = load_settings(file, environ={})
    base = tmp_path / "conf"
    assert settings.catalogue.path == base / "procedures.json"
    assert settings.registry.wsdl_cache_dir == base / "cache/wsdl"
    assert settings.signing.trust_anchors == (base / "trust/root.pem",)
    assert settings.signing.crls == (Path("/var/lib/crls"), base / "crls")
    assert settings.recording.directory == base / "cassettes"
    assert settings.registry.wsdl_cache_dir.is_absolute()


def test_a_relative_sqlite_file_is_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    file = tmp_path / "conf" / "gw.toml"
    file.write_text('[database]\nurl = "sqlite:///./var/gateway.db?timeout=5"\n')
    base = tmp_path / "conf"
    assert load_settings(file, environ={}).database.url == f"sqlite:///{base / 'var' / 'gateway.db'}?timeout=5"
    # An override is read like the file's own key; the default database is beside the file too.
    overridden = load_settings(file, environ={"DVC_GATEWAY_DATABASE__URL": "sqlite:///data/gw.db"})
    assert overridden.database.url == f"sqlite:///{base / 'data' / 'gw.db'}"
    file.write_text("[server]\nport = 8080\n")
    assert load_settings(file, environ={}).database.url == f"sqlite:///{base / 'var' / 'gateway.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/dvc-gateway/gateway.db",
        "sqlite:///file:/srv/dvc-gateway/gateway.db?uri=true",
        "postgresql+psycopg://gateway:secret@db.example.vn/gateway",
    ],
)
def test_other_database_urls_are_kept_as_given(url: str) -> None:
    assert settings_of({"database": {"url": url}}).database.url == url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:gw?mode=memory&uri=true",
        "sqlite:///file::memory:?cache=shared&uri=true",
    ],
)
def test_an_in_memory_sqlite_database_is_refused(url: str) -> None:
    """Each connection would see a database of its own, and nothing would be kept: the gateway needs a file."""
    with pytest.raises(ConfigError, match=r"^\[database\] url: an in-memory SQLite database .* give a file"):
        settings_of({"database": {"url": url}})
    with pytest.raises(ConfigError, match=r"^\[database\] url: an in-memory SQLite database"):
        make_engine(url)


def test_the_signing_section_is_read_alone(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_text('[server]\nport = "not a port"\n[signing]\ntrust_anchors = ["trust/root.pem"]\n')
    signing = read_signing(file, environ={"DVC_GATEWAY_SIGNING__ONLINE_REVOCATION": "true"})
    assert signing.trust_anchors == (tmp_path / "trust/root.pem",) and signing.online_revocation is True
    assert read_signing(tmp_path / "gw.toml", environ={}).trust_settings().online_revocation is False
    file.write_text('[signing]\nonline_revocation = "yes"\n')
    with pytest.raises(ConfigError, match=r"^\[signing\] online_revocation: must be true or false$"):
        read_signing(file, environ={})
    file.write_text('signing = "none"\n')
    with pytest.raises(ConfigError, match=r"^\[signing\] must be a table$"):
        read_signing(file, environ={})


# ----------------------------------------------------------------------------------------------------------------------
# Secrets


def test_secret_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SECRET", "s3cret")
    (tmp_path / "token").write_text("from-file\n")
    assert resolve_secret("env:GW_TEST_SECRET") == "s3cret"
    assert resolve_secret(f"file:{tmp_path / 'token'}") == "from-file"
    assert resolve_secret("literal") == "literal" and resolve_secret(None) is None
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        resolve_secret("env:NOT_SET_ANYWHERE")
    assert SecretRef("env:GW_TEST_SECRET").resolve() == "s3cret"
    assert SecretRef("file:token", base_dir=tmp_path).resolve() == "from-file"
    assert [SecretRef(r).kind for r in ("env:X", "file:/x", "plain")] == ["env", "file", "literal"]
    with pytest.raises(ConfigError, match=r"^\[sms\] secret: environment variable NOT_SET_ANYWHERE is not set$"):
        SecretRef("env:NOT_SET_ANYWHERE").resolve("[sms] secret")
    with pytest.raises(ConfigError, match="cannot read"):
        SecretRef("file:missing", base_dir=tmp_path).resolve()


def test_secret_files_are_read_whole_and_anew(tmp_path: Path) -> None:
    """A secret's file is read to its end (a key or certificate bundle can be long), in UTF-8, and again at every
    use: a rotated secret is used at once."""
    long_secret = "é" + "k" * 200_000
    (tmp_path / "long").write_text(f"{long_secret}\n", encoding="utf-8")
    assert resolve_secret(f"file:{tmp_path / 'long'}") == long_secret
    (tmp_path / "token").write_text("first\n")
    reference = SecretRef("file:token", base_dir=tmp_path)
    assert reference.resolve() == "first"
    (tmp_path / "token").write_text("second\n")
    assert reference.resolve() == "second"
    with pytest.raises(ConfigError, match=r"cannot read .*: Is a directory"):
        resolve_secret(f"file:{tmp_path}")


def test_secret_files_are_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "postal-secret").write_text("shared-secret\n")
    settings = settings_of({"postal": POSTAL}, tmp_path)
    assert settings.postal is not None and settings.postal.resolve_secret() == "shared-secret"


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    literal = "a-literal-secret-0123456789"
    settings = settings_of(
        {
            "payment": {**PAYMENT, "secret": literal},
            "auth": {"tokens": [{"token": literal, "role": "admin"}]},
            "portal": {"token": literal},
        }
    )
    for text in (repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert literal not in text
    assert repr(SecretRef(literal)) == "SecretRef('***')" and str(SecretRef(literal)) == "***"
    # A secret given where a number belongs, or a malformed one, is not quoted in the message.
    for raw in ({"portal": {"timeout_seconds": literal}}, {"sms": {"secret": ["x", literal]}}):
        assert literal not in refused(raw)
    monkeypatch.setenv("GW_TEST_PAYMENT_SECRET", literal)
    assert settings_of({"payment": PAYMENT}).payment.resolve_secret() == literal  # type: ignore[union-attr]


def test_bad_secret_references_are_refused() -> None:
    assert (
        refused({"portal": {"token": "env:"}})
        == "[portal] token: env: must be followed by an environment variable name"
    )
    assert refused({"sms": {"secret": 12345}}).startswith("[sms] secret: must be a non-empty string")
    assert refused({"auth": {"tokens": [{"token": "sha256:abcd", "role": "admin"}]}}) == (
        "[auth] tokens[0].token: sha256: must be followed by 64 hexadecimal digits"
    )


# ----------------------------------------------------------------------------------------------------------------------
# The integrations: off without base_url


@pytest.mark.parametrize(
    ("section", "values"), [("payment", PAYMENT), ("postal", POSTAL), ("national_portal", NATIONAL)]
)
def test_an_integration_without_base_url_is_off(section: str, values: dict[str, Any]) -> None:
    assert getattr(settings_of({}), section) is None
    assert getattr(settings_of({section: {}}), section) is None
    assert getattr(settings_of({section: {**values, "base_url": ""}}), section) is None
    # Its other keys are not checked while it is off, but a key it does not know is still refused.
    without = {key: value for key, value in values.items() if key != "base_url"}
    assert getattr(settings_of({section: {**without, "timeout_seconds": "slow"}}), section) is None
    assert refused({section: {**without, "colour": "red"}}).startswith(f"[{section}] colour: unknown key (known: ")
    assert getattr(settings_of({section: values}), section) is not None


def test_payment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    payment = settings_of({"payment": {**PAYMENT, "at_submission": False, "settlement_url": ""}}).payment
    assert payment is not None
    assert payment.payment_url == "https://sandbox.vnpayment.example/paymentv2/vpcpay.html"
    assert payment.query_path == "/merchant_webapi/api/transaction" and payment.settlement_url is None
    assert (payment.timeout_seconds, payment.query_after_minutes, payment.expire_minutes) == (10.0, 15, 1440)
    assert payment.at_submission is False and payment.server_ip == "127.0.0.1"
    assert payment.client_settings().base_url == PAYMENT["base_url"]
    with pytest.raises(ConfigError, match=r"^\[payment\] secret: environment variable GW_TEST_PAYMENT_SECRET"):
        payment.resolve_secret()
    monkeypatch.setenv("GW_TEST_PAYMENT_SECRET", "")
    with pytest.raises(ConfigError, match=r"^\[payment\] secret: is empty$"):
        payment.resolve_secret()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secret": ""}, "[payment] secret: is required"),
        ({"merchant_code": None}, "[payment] merchant_code: is required"),
        ({"provider": "momo"}, "[payment] provider: must be one of 'vnpay'"),
        ({"at_submission": "yes"}, "[payment] at_submission: must be true or false"),
        ({"query_path": "api"}, "[payment] query_path: must start with '/'"),
        ({"return_url": "/back"}, "[payment] return_url: must be an absolute http:// or https:// URL"),
        ({"timeout_seconds": float("inf")}, "[payment] timeout_seconds: must be a finite number"),
        ({"expire_minutes": 0}, "[payment] expire_minutes: must be at least 1"),
    ],
)
def test_bad_payment_settings(changes: dict[str, Any], message: str) -> None:
    values = {key: value for key, value in {**PAYMENT, **changes}.items() if value is not None}
    assert refused({"payment": values}).startswith(message)


def test_postal_settings(tmp_path: Path) -> None:
    postal = settings_of({"postal": {**POSTAL, "attempts": 5}}, tmp_path).postal
    assert postal is not None and postal.attempts == 5 and postal.office is None
    assert (postal.timeout_seconds, postal.poll_interval_seconds, postal.poll_after_seconds) == (10.0, 300.0, 3600.0)
    office = {"office_name": "Bộ phận Một cửa", "office_phone": "0239", "office_address": "1 Nguyễn Du"}
    postal = settings_of({"postal": {**POSTAL, **office}}, tmp_path).postal
    assert postal is not None and postal.office == {
        "name": "Bộ phận Một cửa",
        "phone": "0239",
        "address": "1 Nguyễn Du",
    }
    unsigned = settings_of({"postal": {"base_url": POSTAL["base_url"]}}).postal
    assert unsigned is not None
    with pytest.raises(ConfigError, match=r"^\[postal\] secret: is not configured$"):
        unsigned.resolve_secret()
    assert refused({"postal": {**POSTAL, "attempts": 0}}) == "[postal] attempts: must be at least 1"
    assert refused({"postal": {**POSTAL, "timeout_seconds": 0}}) == "[postal] timeout_seconds: must be at least 0.001"


def test_national_portal_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.errors import AuthError

    portal = settings_of({"national_portal": {**NATIONAL, "username": " ht-lgsp ", "batch_size": 3}}).national_portal
    assert portal is not None and portal.username == "ht-lgsp" and portal.batch_size == 3
    assert portal.timeout_seconds == 15.0 and portal.client_settings().timeout_seconds == 15.0
    assert "GW_TEST_PORTAL_PASSWORD" not in repr(portal)
    with pytest.raises(AuthError, match="credentials unavailable"):
        portal.password()
    monkeypatch.setenv("GW_TEST_PORTAL_PASSWORD", "pw")
    assert portal.password() == "pw"
    missing = {key: value for key, value in NATIONAL.items() if key != "username"}
    assert refused({"national_portal": missing}) == "[national_portal] username: is required"
    assert refused({"national_portal": {**NATIONAL, "dstcode": "  "}}) == "[national_portal] dstcode: must not be blank"
    assert (
        refused({"national_portal": {**NATIONAL, "batch_size": 0}})
        == "[national_portal] batch_size: must be at least 1"
    )


# ----------------------------------------------------------------------------------------------------------------------
# Core sections


def test_the_calendar_section_gives_the_office_calendar() -> None:
    calendar = settings_of(
        {
            "calendar": {
                "extra_holidays": ["2026-11-20", date(2026, 12, 24)],
                "makeup_working_days": "2026-10-10",
                "morning": "07:30-11:30",
                "afternoon": "13:00-16:30",
            }
        }
    ).calendar
    office = office_calendar(calendar)
    assert office.extra_days_off == frozenset({date(2026, 11, 20), date(2026, 12, 24)})
    assert office.makeup_working_days == frozenset({date(2026, 10, 10)})
    assert office.morning == (time(7, 30), time(11, 30)) and office.afternoon == (time(13, 0), time(16, 30))
    assert not office.is_working_day(date(2026, 11, 20)) and office.is_working_day(date(2026, 10, 10))
    assert office_calendar(settings_of({}).calendar) == office_calendar(Settings().calendar)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"extra_holidays": ["2026-13-01"]}, "[calendar] extra_holidays: '2026-13-01' is not a valid date"),
        ({"extra_holidays": ["20/11/2026"]}, "[calendar] extra_holidays: '20/11/2026' is not a date \"YYYY-MM-DD\""),
        ({"extra_holidays": 5}, "[calendar] extra_holidays: must be a list of dates"),
        ({"afternoon": "17:00-13:30"}, "[calendar] afternoon: the session must end after it starts"),
        ({"morning": "07:00-14:00"}, "[calendar] afternoon: must start at or after the morning session ends (14:00)"),
        (
            {"extra_holidays": ["2026-10-10"], "makeup_working_days": ["2026-10-10"]},
            "[calendar] makeup_working_days: 2026-10-10 also listed in extra_holidays",
        ),
        ({"weekend": "sunday"}, "[calendar] weekend: unknown key"),
    ],
)
def test_bad_calendar_sections(section: dict[str, Any], message: str) -> None:
    assert refused({"calendar": section}).startswith(message)


def test_sections_read_on_their_own() -> None:
    auth = parse_section(
        AuthSection, {"tokens": [{"token": "env:PORTAL_TOKEN", "role": "agency:000.00.23.H38"}]}, "auth"
    )
    assert auth.tokens[0].role == "agency:000.00.23.H38" and auth.tokens[0].token.kind == "env"
    with pytest.raises(ConfigError, match=r"^\[auth\] users: unknown key \(known: tokens\)$"):
        parse_section(AuthSection, {"users": []}, "auth")
    assert parse_section(AuthSection, None, "auth") == AuthSection()


def test_outbox_attributes_are_the_retry_policy_s() -> None:
    outbox = settings_of(
        {"outbox": {"attempts": 5, "backoff_initial_seconds": 1.5, "backoff_max_seconds": 120, "breaker_failures": 3}}
    ).outbox
    assert (outbox.max_attempts, outbox.initial_seconds, outbox.max_seconds) == (5, 1.5, 120.0)
    assert (outbox.jitter_seconds, outbox.lease_seconds, outbox.concurrency_per_agency) == (2.0, 60.0, 4)
    assert (outbox.failure_threshold, outbox.cooldown_seconds) == (3, 30.0)
