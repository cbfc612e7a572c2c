"""Configuration: one TOML file, every key overridable from the environment, secrets by reference.

``--config FILE`` or ``DVC_GATEWAY_CONFIG`` names the file; ``DVC_GATEWAY_<SECTION>__<KEY>`` overrides one key
(the value is read as a TOML value when it parses as one, else as a string). Secrets are given as ``env:NAME`` or
``file:PATH`` references and resolved only when used, never logged.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signing.trust import TrustSettings

ENV_PREFIX = "DVC_GATEWAY_"
CONFIG_ENV = "DVC_GATEWAY_CONFIG"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why, in one line."""


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``DVC_GATEWAY_SERVER__PORT=9000`` sets ``data["server"]["port"] = 9000``."""
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == CONFIG_ENV:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: [{part}] is not a section")
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return data


def resolve_secret(value: str | None, *, key: str = "secret") -> str | None:
    """The secret a reference names: ``env:NAME``, ``file:PATH``, or the literal value itself."""
    if value is None:
        return None
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{key}: environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    return value


@dataclass
class Config:
    """The parsed configuration; ``raw`` keeps every section, typed views are built from it."""

    raw: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        return value

    def path(self, value: str | Path) -> Path:
        """A path from the configuration, relative to the configuration file's directory."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _paths(self, section: str, key: str) -> list[Path]:
        value = self.section(section).get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"[{section}] {key} must be a list of paths")
        return [self.path(v) for v in value]

    @property
    def signing(self) -> TrustSettings:
        section = self.section("signing")
        online = section.get("online_revocation", False)
        if not isinstance(online, bool):
            raise ConfigError("[signing] online_revocation must be true or false")
        timeout = section.get("timeout_seconds", 10.0)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError("[signing] timeout_seconds must be a positive number")
        return TrustSettings(
            trust_anchors=tuple(self._paths("signing", "trust_anchors")),
            intermediates=tuple(self._paths("signing", "intermediates")),
            crls=tuple(self._paths("signing", "crls")),
            online_revocation=online,
            fetch_timeout_seconds=float(timeout),
        )


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """The configuration from ``path`` (or ``$DVC_GATEWAY_CONFIG``, or none) with environment overrides."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file {file} not found") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {file}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
        base_dir = file.resolve().parent
    return Config(raw=apply_env_overrides(data, environ), base_dir=base_dir)
