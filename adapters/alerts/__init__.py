"""The operators' alert webhook: the gateway posts each deadline-watch finding there as JSON."""

from adapters.alerts.webhook import UPSTREAM, AlertNotifier, AlertWebhookClient

__all__ = ["UPSTREAM", "AlertNotifier", "AlertWebhookClient"]
