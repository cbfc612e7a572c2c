"""API tokens and roles (DESIGN.md §5 "Authentication").

Tokens come from the configuration, one ``[[auth.tokens]]`` table each::

    [[auth.tokens]]
    token = "env:PORTAL_TOKEN"      # or "file:/run/secrets/portal", a literal, or "sha256:<64 hex digits>"
    role = "portal"                 # or "agency:<agency code>", or "admin"

Only the SHA-256 digest of each token is kept in memory (a ``sha256:`` entry gives the digest itself, so the token
need not appear in the configuration at all). A presented token is hashed and compared with every configured digest
in constant time (:func:`hmac.compare_digest`, and every digest is compared, so the time taken does not say which
one matched). Several tokens may share a role (rotation); one token may not have two roles. A bad entry is a
:class:`~gateway.config.ConfigError` with one line naming the entry.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Config, ConfigError, resolve_secret
from .domain.codes import is_valid_agency_code

__all__ = ["ADMIN", "AGENCY", "PORTAL", "Principal", "TokenStore", "hash_token", "parse_role"]

PORTAL = "portal"
ADMIN = "admin"
AGENCY = "agency"

_HEX_DIGEST_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
#: A token shorter than this is refused: it could be guessed.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``role`` is ``portal``, ``agency`` or ``admin``; ``agency_code`` is set for ``agency``."""

    role: str
    agency_code: str | None = None

    @property
    def name(self) -> str:
        """``portal``, ``admin`` or ``agency:<code>``: the actor recorded in history and audit entries."""
        return f"{AGENCY}:{self.agency_code}" if self.role == AGENCY else self.role

    def is_agency(self, code: str | None = None) -> bool:
        return self.role == AGENCY and (code is None or self.agency_code == code)


def hash_token(token: str) -> bytes:
    """The SHA-256 digest a token is stored as."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_role(value: Any, *, where: str = "role") -> Principal:
    """The principal a configured ``role`` stands for; ``ConfigError`` for anything else."""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string: portal, admin or agency:<agency code>")
    if value in (PORTAL, ADMIN):
        return Principal(value)
    if value.startswith(f"{AGENCY}:"):
        code = value[len(AGENCY) + 1 :]
        if not is_valid_agency_code(code):
            raise ConfigError(f"{where}: {code!r} is not an agency code (e.g. agency:000.00.23.H38)")
        return Principal(AGENCY, code)
    raise ConfigError(f"{where} must be portal, admin or agency:<agency code>, got {value!r}")


def _digest(value: Any, *, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string (a literal, env:NAME, file:PATH or sha256:<hex>)")
    if value.startswith("sha256:"):
        hexdigest = value[len("sha256:") :]
        if _HEX_DIGEST_RE.match(hexdigest) is None:
            raise ConfigError(f"{where}: sha256: must be followed by 64 hexadecimal digits")
        return bytes.fromhex(hexdigest)
    secret = resolve_secret(value, key=where)
    if not secret:
        raise ConfigError(f"{where}: the token is empty")
    if len(secret) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters")
    return hash_token(secret)


class TokenStore:
    """Configured token digests and their principals."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]] = ()) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for digest, principal in entries:
            self._add(digest, principal, where="auth.tokens")

    def _add(self, digest: bytes, principal: Principal, *, where: str) -> None:
        for known, other in self._entries:
            if hmac.compare_digest(known, digest):
                if other == principal:
                    return  # the same token listed twice for the same role: harmless
                raise ConfigError(f"{where}: the same token is configured for roles {other.name} and {principal.name}")
        self._entries.append((digest, principal))

    @classmethod
    def from_config(cls, config: Config) -> TokenStore:
        """The tokens of ``[[auth.tokens]]`` (none configured: every authenticated endpoint answers 401)."""
        section = config.section("auth")
        unknown = sorted(set(section) - {"tokens"})
        if unknown:
            raise ConfigError(f"[auth] unknown key {unknown[0]!r} (expected [[auth.tokens]])")
        tokens = section.get("tokens", [])
        if not isinstance(tokens, list):
            raise ConfigError("[auth] tokens must be a list of [[auth.tokens]] tables")
        store = cls()
        for index, entry in enumerate(tokens):
            where = f"[[auth.tokens]] entry {index}"
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{where} must be a table with token and role")
            extra = sorted(set(entry) - {"token", "role"})
            if extra:
                raise ConfigError(f"{where}: unknown key {extra[0]!r} (expected token and role)")
            if "token" not in entry or "role" not in entry:
                missing = "token" if "token" not in entry else "role"
                raise ConfigError(f"{where}: {missing} is required")
            principal = parse_role(entry["role"], where=f"{where} role")
            store._add(_digest(entry["token"], where=f"{where} token"), principal, where=where)
        return store

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of ``token``, or ``None`` when it is missing or unknown (compared in constant time)."""
        if not token:
            return None
        digest = hash_token(token)
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest) and found is None:
                found = principal
        return found
