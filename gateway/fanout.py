"""Fan-out of a dossier's state change (DESIGN.md §4, step 4): which integrations hear of it.

Every change recorded in a dossier's history (intake included) passes :func:`after_change` inside the transaction
that made it, so the work it causes is written to the outbox atomically with the change:

* the provincial portal's webhook (``[portal] webhook_url``): :func:`gateway.intake.enqueue_webhook`;
* the national portal's sync (``[national_portal] base_url``): :func:`gateway.national_sync.on_change`;
* fee payment (``[payment] base_url``): :func:`gateway.fees.on_change`;
* postal pickup and delivery (``[postal] base_url``): :func:`gateway.shipments.on_change`.

An integration without its ``base_url`` is off: its steps are skipped, and the flow modules say so in the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .config import Config
from .store.models import Dossier, HistoryEntry

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Fanout", "after_change", "check_settings"]


@dataclass(frozen=True)
class Fanout:
    """The integrations that are on (configured) for this process."""

    webhook: bool = False
    national: bool = False
    payment: bool = False
    postal: bool = False
    #: The process's configuration, for the flows that need their settings (the payment's merchant and secret).
    config: Config | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> Fanout:
        config = runtime.config
        return cls(
            webhook=_configured(config, "portal", "webhook_url"),
            national=_configured(config, "national_portal"),
            payment=_configured(config, "payment"),
            postal=_configured(config, "postal"),
            config=config,
        )


def _configured(config: Config, section: str, key: str = "base_url") -> bool:
    value = config.section(section).get(key)
    return isinstance(value, str) and bool(value)


def after_change(
    session: Session, dossier: Dossier, entry: HistoryEntry, fanout: Fanout, *, previous: str | None, now: datetime
) -> None:
    """Enqueue what ``entry`` (flushed: it has an id) causes; ``previous`` is the status before it (none at intake)."""
    from . import fees, national_sync, shipments
    from .intake import enqueue_webhook

    if fanout.webhook:
        enqueue_webhook(session, dossier, entry)
    fees.on_change(session, dossier, entry, enabled=fanout.payment, previous=previous, now=now, config=fanout.config)
    shipments.on_change(session, dossier, entry, enabled=fanout.postal, previous=previous, now=now)
    national_sync.on_change(session, dossier, entry, enabled=fanout.national, previous=previous, now=now)


def check_settings(config: Config) -> None:
    """Read the settings of every configured integration now: :class:`~gateway.config.ConfigError` for a bad one, so
    a daemon refuses to start rather than dead-lettering each message later."""
    from . import fees, national_sync, shipments

    if _configured(config, "national_portal"):
        national_sync.PortalSettings.from_config(config)
    fees.PaymentSettings.from_config(config)  # both: ``None`` when off
    shipments.PostalSettings.from_config(config)
