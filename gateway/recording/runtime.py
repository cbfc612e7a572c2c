"""The ``[recording]`` section applied to a running gateway: :func:`client_factory_for` gives the factory every
outbound client is built from, the given one unchanged with ``mode = "off"``, else a new factory with the recording
or replay wrapper on top (the process-wide default factory is never changed, so simulators in the same process keep
talking to the real network).

Replay never touches the network, which is why the settings refuse it with ``[signing] online_revocation = true``;
a cassette directory that cannot be read is one :class:`~gateway.config.ConfigError` line, before anything serves.
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
