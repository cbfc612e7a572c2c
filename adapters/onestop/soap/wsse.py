"""WS-Security for agencies that authenticate each message with a UsernameToken.

:class:`LazyUsernameToken` obtains the password (a secret reference resolved by the caller) when each message is
signed and drops it afterwards, so it is never kept resolved nor shown in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree
from zeep.wsse.username import UsernameToken

__all__ = ["LazyUsernameToken"]


class LazyUsernameToken(UsernameToken):
    """WS-Security UsernameToken whose password is obtained when each message is signed, and dropped after."""

    def __init__(self, username: str, password: Callable[[], str], *, use_digest: bool = False) -> None:
        super().__init__(username, password=None, use_digest=use_digest)
        self._secret = password

    def apply(self, envelope: etree._Element, headers: Any) -> tuple[Any, Any]:
        self.password = self._secret()
        try:
            return super().apply(envelope, headers)
        finally:
            self.password = None

    def __repr__(self) -> str:
        return f"LazyUsernameToken(username={self.username!r}, password=***, digest={self.use_digest})"
