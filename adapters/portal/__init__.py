"""The provincial portal's webhook: the gateway tells the portal of every change of its dossiers."""

from adapters.portal.webhook import PortalNotifier, PortalWebhookClient

__all__ = ["PortalNotifier", "PortalWebhookClient"]
