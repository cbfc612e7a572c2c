"""The ``[recording]`` section applied to a running gateway (``serve``, ``worker``, ``demo``).

:func:`client_factory_for` is what :attr:`gateway.runtime.Runtime.client_factory` returns: with ``mode = "off"`` (the
default) the given factory unchanged; with ``record`` or ``replay`` a new :class:`~adapters.http.ClientFactory`
holding the given factory's wrappers plus the recording or replay wrapper. Every outbound exchange of the gateway
(agency REST and SOAP through zeep's httpx transport, WSDL fetches, the national portal, payment, postal, the
portal webhook) is built through that factory, so all are recorded or replayed alike. The process-wide
:data:`adapters.http.default_factory` itself is never changed: simulators running in the same process (``demo``,
tests) keep talking to the real network.

Replay never touches the network: the replay wrapper ignores the transport beneath it. Revocation fetches of the
signature verifier do not pass the client factory, so ``replay`` requires ``[signing] online_revocation = false``.

A wrong setting is a one-line :class:`~gateway.config.ConfigError` (exit code 2 from the CLI), raised when the
runtime's factory is first used, before the daemon serves anything.
"""

from __future__ import annotations

from adapters.http import ClientFactory

from ..config import Config, ConfigError
from .har import HarError
from .transport import RecordingSettings, install

__all__ = ["client_factory_for", "recording_settings"]


def recording_settings(config: Config) -> RecordingSettings:
    """The ``[recording]`` settings of ``config`` (relative directories from the configuration file's directory)."""
    settings = RecordingSettings.from_config(config.section("recording"), config.base_dir)
    if settings.mode == "replay" and config.section("signing").get("online_revocation") is True:
        raise ConfigError(
            '[recording] mode = "replay" needs [signing] online_revocation = false: revocation fetches are not '
            "recorded, and replay never touches the network"
        )
    return settings


def client_factory_for(config: Config, base: ClientFactory) -> ClientFactory:
    """The factory the gateway's outbound clients come from under ``config``'s ``[recording]`` section."""
    settings = recording_settings(config)
    if settings.mode == "off":
        return base
    factory = ClientFactory(base.wrappers)
    try:
        install(factory, settings)
    except FileNotFoundError:
        raise ConfigError(f"[recording] directory {settings.directory}: no such cassette directory") from None
    except (HarError, ValueError) as exc:
        raise ConfigError(f"[recording] {exc}") from None
    except OSError as exc:
        raise ConfigError(f"[recording] directory {settings.directory}: {exc.strerror or exc}") from None
    return factory
