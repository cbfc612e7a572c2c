"""Configuration: TOML, environment overrides, secret references."""

import pytest

from gateway.config import ConfigError, load_config, resolve_secret


def test_env_overrides_keys_with_toml_values(tmp_path):
    file = tmp_path / "gw.toml"
    file.write_text('[server]\nport = 8080\n[signing]\ntrust_anchors = ["trust/root.pem"]\n')
    config = load_config(
        file, environ={"DVC_GATEWAY_SERVER__PORT": "9090", "DVC_GATEWAY_SIGNING__ONLINE_REVOCATION": "true"}
    )
    assert config.section("server")["port"] == 9090
    signing = config.signing
    assert signing.online_revocation is True
    assert signing.trust_anchors == (tmp_path / "trust/root.pem",)


def test_env_override_string_that_is_not_toml():
    config = load_config(None, environ={"DVC_GATEWAY_DATABASE__URL": "sqlite:///x.db"})
    assert config.section("database")["url"] == "sqlite:///x.db"


def test_config_file_from_environment_variable(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text("[server]\nhost = '127.0.0.1'\n")
    assert load_config(None, environ={"DVC_GATEWAY_CONFIG": str(file)}).section("server")["host"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("content", "message"),
    [("[server\n", "not valid TOML"), ("[signing]\nonline_revocation = 'yes'\n", "online_revocation")],
)
def test_bad_configuration_is_one_clear_error(tmp_path, content, message):
    file = tmp_path / "bad.toml"
    file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        _ = load_config(file, environ={}).signing


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_secret_references(tmp_path, monkeypatch):
    monkeypatch.setenv("GW_TEST_SECRET", "s3cret")
    (tmp_path / "token").write_text("from-file\n")
    assert resolve_secret("env:GW_TEST_SECRET") == "s3cret"
    assert resolve_secret(f"file:{tmp_path / 'token'}") == "from-file"
    assert resolve_secret("literal") == "literal"
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        resolve_secret("env:NOT_SET_ANYWHERE")
