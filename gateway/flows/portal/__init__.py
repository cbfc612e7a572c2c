"""The provincial portal's flow: every recorded change of a dossier notified to the portal's webhook."""

from gateway.flows.portal.handler import PortalWebhookHandler
from gateway.flows.portal.reactions import enqueue_webhook, subscriptions

__all__ = ["PortalWebhookHandler", "enqueue_webhook", "subscriptions"]
