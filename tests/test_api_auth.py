"""API tokens and roles from ``[[auth.tokens]]``: literal, ``env:``, ``file:`` and ``sha256:`` tokens, hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import Principal, TokenStore, hash_token
from gateway.config import ConfigError
from gateway.settings import Settings

TOKEN = "a-long-enough-token-1234"


def tokens_of(auth: Any) -> TokenStore:
    """The token store of an ``[auth]`` table, read as the gateway reads it (settings, then the tokens)."""
    return TokenStore.from_settings(Settings.from_raw({"auth": auth}, Path.cwd()).auth)


def store(*entries: dict[str, Any], **raw: Any) -> TokenStore:
    return tokens_of({"tokens": list(entries), **raw})


def test_every_kind_of_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_AGENCY_TOKEN", "agency-token-from-the-env")
    secret = tmp_path / "admin.token"
    secret.write_text("admin-token-from-a-file\n", encoding="utf-8")
    digest = hashlib.sha256(b"hashed-portal-token-xyz").hexdigest()
    tokens = store(
        {"token": TOKEN, "role": "portal"},
        {"token": f"sha256:{digest.upper()}", "role": "portal"},
        {"token": "env:GW_TEST_AGENCY_TOKEN", "role": "agency:000.00.23.H38"},
        {"token": f"file:{secret}", "role": "admin"},
    )
    assert len(tokens) == 4
    assert tokens.authenticate(TOKEN) == Principal("portal")
    assert tokens.authenticate("hashed-portal-token-xyz") == Principal("portal")
    assert tokens.authenticate("agency-token-from-the-env") == Principal("agency", "000.00.23.H38")
    assert tokens.authenticate("admin-token-from-a-file") == Principal("admin")
    assert tokens.authenticate("admin-token-from-a-file ") is None
    assert tokens.authenticate("") is None and tokens.authenticate(None) is None
    assert tokens.authenticate(f"sha256:{digest}") is None  # the digest is not the token
    assert Principal("agency", "000.00.23.H38").name == "agency:000.00.23.H38"


def test_only_digests_are_kept() -> None:
    tokens = store({"token": TOKEN, "role": "portal"})
    assert TOKEN not in repr(vars(tokens))
    assert hash_token(TOKEN) in [digest for digest, _ in tokens._entries]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"token": TOKEN, "role": "root"}, "must be portal, admin or agency:<agency code>"),
        ({"token": TOKEN, "role": "agency:"}, "is not an agency code"),
        ({"token": TOKEN, "role": "agency:bad code"}, "is not an agency code"),
        ({"token": TOKEN, "role": 1}, "must be a string"),
        ({"token": "short", "role": "portal"}, "shorter than 16"),
        ({"token": "", "role": "portal"}, "non-empty string"),
        ({"token": "sha256:abcd", "role": "portal"}, "64 hexadecimal digits"),
        ({"token": "env:GW_TEST_SURELY_UNSET_VARIABLE", "role": "portal"}, "is not set"),
        ({"token": "file:/nonexistent/token", "role": "portal"}, "cannot read"),
        ({"role": "portal"}, "token: is required"),
        ({"token": TOKEN}, "role: is required"),
        ({"token": TOKEN, "role": "portal", "scope": "all"}, "scope: unknown key"),
    ],
)
def test_bad_entries_are_one_line_config_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        store({"token": "another-good-token-0001", "role": "admin"}, entry)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("[auth] tokens[1].")
    assert TOKEN not in text


def test_one_token_cannot_have_two_roles() -> None:
    with pytest.raises(
        ConfigError, match=r"^\[auth\] tokens\[1\]: the same token is configured for roles portal and admin"
    ):
        store({"token": TOKEN, "role": "portal"}, {"token": TOKEN, "role": "admin"})
    assert len(store({"token": TOKEN, "role": "portal"}, {"token": TOKEN, "role": "portal"})) == 1


def test_bad_sections() -> None:
    with pytest.raises(ConfigError, match=r"^\[auth\] tokens: must be a list$"):
        tokens_of({"tokens": {"token": TOKEN}})
    with pytest.raises(ConfigError, match=r"^\[auth\] users: unknown key"):
        tokens_of({"users": []})
    with pytest.raises(ConfigError, match=r"^\[auth\] tokens\[0\]: must be a table$"):
        tokens_of({"tokens": ["x"]})
    assert len(tokens_of({})) == 0
    assert len(TokenStore.from_settings(Settings().auth)) == 0


def test_the_app_refuses_a_bad_token_configuration(tmp_path: Path) -> None:
    from gateway.api import create_app
    from gateway.runtime import Runtime
    from gateway.store.database import Database

    db = Database.connect(f"sqlite:///{tmp_path}/x.db")
    try:
        bad_role = {"auth": {"tokens": [{"token": TOKEN, "role": "superuser"}]}}
        with pytest.raises(ConfigError, match=r"^\[auth\] tokens\[0\]\.role: must be portal, admin or agency"):
            Settings.from_raw(bad_role, tmp_path)
        unreadable = {"auth": {"tokens": [{"token": "env:GW_TEST_SURELY_UNSET_VARIABLE", "role": "admin"}]}}
        runtime = Runtime(settings=Settings.from_raw(unreadable, tmp_path), db=db)
        with pytest.raises(ConfigError, match=r"^\[auth\] tokens\[0\]\.token: environment variable .* is not set$"):
            create_app(runtime)
    finally:
        db.dispose()
