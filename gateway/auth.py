"""API tokens and roles: who may call the HTTP API, as the configuration says.

Tokens come from the configuration, one ``[[auth.tokens]]`` table each (:class:`gateway.sections.TokenEntry`)::

    [[auth.tokens]]
    token = "env:PORTAL_TOKEN"      # or "file:/run/secrets/portal", a literal, or "sha256:<64 hex digits>"
    role = "portal"                 # or "agency:<agency code>", or "admin"

Only the SHA-256 digest of each token is kept in memory (a ``sha256:`` entry gives the digest itself, so the token
need not appear in the configuration at all). A presented token is hashed and compared with every configured digest
in constant time (:func:`hmac.compare_digest`, and every digest is compared, so the time taken does not say which
one matched). Several tokens may share a role (rotation); one token may not have two roles. A token that cannot be
read, is too short or has two roles is a :class:`~gateway.config.ConfigError` with one line naming the entry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import ConfigError, SecretRef

if TYPE_CHECKING:
    from .sections import AuthSection

__all__ = ["ADMIN", "AGENCY", "PORTAL", "Principal", "TokenStore", "hash_token", "principal_of"]

PORTAL = "portal"
ADMIN = "admin"
AGENCY = "agency"

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


def principal_of(role: str) -> Principal:
    """The principal a role of the configuration stands for (``portal``, ``admin`` or ``agency:<code>``, as
    :class:`gateway.sections.TokenEntry` checked it)."""
    if role.startswith(f"{AGENCY}:"):
        return Principal(AGENCY, role.removeprefix(f"{AGENCY}:"))
    return Principal(role)


def _digest(token: SecretRef, *, where: str) -> bytes:
    if token.reference.startswith("sha256:"):
        return bytes.fromhex(token.reference.removeprefix("sha256:"))
    secret = token.resolve(where)
    if not secret:
        raise ConfigError(f"{where}: the token is empty")
    if len(secret) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters")
    return hash_token(secret)


def _binding(key: bytes, digest: bytes) -> str:
    return hmac.new(key, digest, hashlib.sha256).hexdigest()


class TokenStore:
    """Configured token digests and their principals."""

    def __init__(self, entries: Iterable[tuple[bytes, Principal]] = ()) -> None:
        self._entries: list[tuple[bytes, Principal]] = []
        for digest, principal in entries:
            self._add(digest, principal, where="[auth] tokens")

    def _add(self, digest: bytes, principal: Principal, *, where: str) -> None:
        for known, other in self._entries:
            if hmac.compare_digest(known, digest):
                if other == principal:
                    return  # the same token listed twice for the same role: harmless
                raise ConfigError(f"{where}: the same token is configured for roles {other.name} and {principal.name}")
        self._entries.append((digest, principal))

    @classmethod
    def from_settings(cls, auth: AuthSection) -> TokenStore:
        """The tokens of ``[[auth.tokens]]``, read now (none configured: every authenticated endpoint answers 401)."""
        store = cls()
        for index, entry in enumerate(auth.tokens):
            where = f"[auth] tokens[{index}]"
            store._add(_digest(entry.token, where=f"{where}.token"), principal_of(entry.role), where=where)
        return store

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def binding(token: str, key: bytes) -> str:
        """What a record opened with ``token`` may keep of it: an HMAC-SHA256 (hex), keyed with ``key``, of the token's
        digest. Neither the token nor its digest can be read back from it; :meth:`holds` says whether it still
        stands for a configured token."""
        return _binding(key, hash_token(token))

    def holds(self, binding: str, key: bytes, role: str) -> bool:
        """Whether a configured token of ``role`` has this :meth:`binding` under ``key`` (every entry is compared, in
        constant time): false once the token is removed from the configuration or given another role."""
        found = False
        for known, principal in self._entries:
            if hmac.compare_digest(_binding(key, known), binding) and principal.role == role:
                found = True
        return found

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
