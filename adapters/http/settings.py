"""How to reach one upstream: :class:`ClientSettings` (address, timeouts, pool, TLS, size cap, address policy).

:func:`build_ssl_context` turns those settings into the ``ssl.SSLContext`` the connections use, with the operating
system's trust store, a CA bundle or a given context, and an optional client certificate for mutual TLS.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapters.http.transport import DEFAULT_MAX_RESPONSE_BYTES
from adapters.netguard import AddressPolicy

__all__ = ["USER_AGENT", "ClientSettings", "build_ssl_context"]

#: The ``User-Agent`` of every request the gateway sends (token requests included).
USER_AGENT = "dvc-gateway"


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one upstream.

    :param base_url: the upstream's base URL (http or https; credentials belong in ``auth``, not in the URL).
    :param timeout_seconds: read, write and pool timeouts (each socket operation).
    :param connect_timeout_seconds: connection timeout (name resolution and TCP connect, TLS handshake included).
    :param total_timeout_seconds: deadline of one whole exchange, response body included (``None``: none).
    :param max_connections: connections open at once to the upstream (requests beyond wait for one to be free).
    :param max_keepalive: ``0`` closes each connection after its exchange; any other value keeps idle connections
        (as many as are open, up to ``max_connections``) for ``keepalive_expiry_seconds`` to be used again.
    :param verify: ``True`` (the operating system's trust store), ``False`` (no verification: tests only), the path
        of a CA bundle file or directory, or an ``ssl.SSLContext`` used as it is.
    :param client_cert: ``(certificate file, private key file)`` for mutual TLS.
    :param client_key_password: returns the private key's password, when it has one.
    :param headers: sent with every request (``User-Agent`` and ``Accept-Encoding: identity`` by default).
    :param max_response_bytes: larger responses fail with :class:`~adapters.http.transport.ResponseTooLargeError`
        (a bad response) while streaming.
    :param address_policy: where connections may go (:class:`~adapters.netguard.AddressPolicy`).
    """

    base_url: str
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    total_timeout_seconds: float | None = 60.0
    max_connections: int = 20
    max_keepalive: int = 10
    keepalive_expiry_seconds: float = 30.0
    verify: bool | str | os.PathLike[str] | ssl.SSLContext = True
    client_cert: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None
    client_key_password: Callable[[], str] | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)

    def __post_init__(self) -> None:
        try:
            url = httpx.URL(self.base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ValueError(f"base_url is not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("base_url must be an absolute http:// or https:// URL")
        if url.userinfo:
            raise ValueError("base_url must not carry credentials: configure them as auth")
        for name in ("timeout_seconds", "connect_timeout_seconds", "keepalive_expiry_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.total_timeout_seconds is not None and self.total_timeout_seconds <= 0:
            raise ValueError("total_timeout_seconds must be positive (or None)")
        if self.max_connections < 1 or not 0 <= self.max_keepalive <= self.max_connections:
            raise ValueError("max_connections must be positive and max_keepalive between 0 and max_connections")
        if self.max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        if isinstance(self.verify, ssl.SSLContext) and self.client_cert is not None:
            raise ValueError("with verify=<SSLContext>, load the client certificate into that context")

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_seconds, connect=self.connect_timeout_seconds)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_keepalive,
            keepalive_expiry=self.keepalive_expiry_seconds,
        )


#: The TLS contexts built, by what they were built from (:func:`_context_key`); most recently used last.
_CONTEXTS: OrderedDict[tuple[Any, ...], ssl.SSLContext] = OrderedDict()
_CONTEXTS_KEPT = 32
_CONTEXTS_LOCK = threading.Lock()


def _file_state(path: str | os.PathLike[str] | None) -> tuple[int, int, int] | None:
    """What says a trust or key file changed on disk (``None``: no such file)."""
    if path is None:
        return None
    try:
        state = os.stat(path)
    except OSError:
        return None
    return state.st_ino, state.st_size, state.st_mtime_ns


def _context_key(settings: ClientSettings, verify: bool | str | os.PathLike[str]) -> tuple[Any, ...]:
    """What the context of ``settings`` is built from, files' states included: a CA bundle, client certificate or
    key replaced on disk (or the system store updated) makes another key, so the next client loads it afresh."""
    if verify is True:
        paths = ssl.get_default_verify_paths()  # SSL_CERT_FILE and SSL_CERT_DIR included
        trust: tuple[Any, ...] = ("system", paths.cafile, _file_state(paths.cafile), paths.capath)
    elif verify is False:
        trust = ("none",)
    else:
        trust = ("path", str(verify), _file_state(verify))
    if settings.client_cert is None:
        return trust
    certfile, keyfile = (str(part) for part in settings.client_cert)
    password = settings.client_key_password() if settings.client_key_password is not None else None
    secret = hashlib.sha256(password.encode()).hexdigest() if password is not None else None
    return (*trust, certfile, _file_state(certfile), keyfile, _file_state(keyfile), secret)


def build_ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    """The TLS context ``settings`` describe (trust, verification, client certificate).

    Contexts are shared by the clients whose settings load the same files in the same state: loading the system's
    trust store costs about 20 ms of CPU, which a context built for each client (each agency registration, each
    command's clients) spent again and again on the event loop's thread."""
    verify = settings.verify
    if isinstance(verify, ssl.SSLContext):
        return verify
    key = _context_key(settings, verify)
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is not None:
            _CONTEXTS.move_to_end(key)
            return context
    context = _new_ssl_context(settings, verify)
    with _CONTEXTS_LOCK:
        _CONTEXTS[key] = context
        while len(_CONTEXTS) > _CONTEXTS_KEPT:
            _CONTEXTS.popitem(last=False)
    return context


def _new_ssl_context(settings: ClientSettings, verify: bool | str | os.PathLike[str]) -> ssl.SSLContext:
    if verify is True:
        # The operating system's store (update-ca-certificates & co.), where a province adds its own CAs.
        context = ssl.create_default_context()
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        path = Path(verify)
        try:
            if path.is_dir():
                context = ssl.create_default_context(capath=str(path))
            else:
                context = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"Cannot load the CA bundle {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if settings.client_cert is not None:
        certfile, keyfile = (str(part) for part in settings.client_cert)
        try:
            context.load_cert_chain(certfile, keyfile, password=settings.client_key_password)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
            raise ValueError(f"Cannot load the client certificate {certfile} with key {keyfile}: {reason}") from exc
    return context
