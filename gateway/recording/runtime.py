"""The ``[recording]`` section applied to a running gateway (``serve``, ``worker``, ``demo``).

:func:`client_factory_for` is what :attr:`gateway.runtime.Runtime.client_factory` returns: with ``mode = "off"`` (the
default) the given factory unchanged; with ``record`` or ``replay`` a new :class:`~adapters.http.ClientFactory`
holding the given factory's wrappers plus the recording or replay wrapper. Every outbound exchange of the gateway
(agency REST and SOAP through zeep's httpx transport, WSDL fetches, the national portal, payment, postal, the
portal webhook) is built through that factory, so all are recorded or replayed alike. The process-wide
:data:`adapters.http.default_factory` itself is never changed: simulators running in the same process (``demo``,
tests) keep talking to the real network.

Replay never touches the network: the replay wrapper ignores the transport beneath it. Revocation fetches of the
signature verifier do not pass the client factory, so the settings refuse ``replay`` with ``[signing]
online_revocation = true`` (:class:`gateway.settings.Settings`). A cassette directory that cannot be read is a
one-line :class:`~gateway.config.ConfigError` (exit code 2 from the CLI), raised before the daemon serves anything.
"""

from __future__ import annotations

from adapters.http import ClientFactory

from ..config import ConfigError
from .har import HarError
from .settings import RecordingSettings
from .transport import install

__all__ = ["client_factory_for"]


def client_factory_for(settings: RecordingSettings, base: ClientFactory) -> ClientFactory:
    """The factory the gateway's outbound clients come from under the ``[recording]`` ``settings``."""
    if settings.mode == "off":
        return base
    factory = ClientFactory(base.wrappers)
    try:
        install(factory, settings)
    except FileNotFoundError:
        raise ConfigError(f"[recording] directory: {settings.directory}: no such cassette directory") from None
    except (HarError, ValueError) as exc:
        raise ConfigError(f"[recording] {exc}") from None
    except OSError as exc:
        raise ConfigError(f"[recording] directory: {settings.directory}: {exc.strerror or exc}") from None
    return factory
