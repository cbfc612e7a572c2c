"""The operators' alerts: the deadline watch's findings posted to ``[alerts] webhook_url`` through the outbox.

The periodic job (:mod:`gateway.flows.alerts.jobs`) turns each new finding into one outbox message; the handler
posts it. The composition root builds the webhook client.
"""

from gateway.flows.alerts.handler import AlertWebhookHandler
from gateway.flows.alerts.jobs import alert_key, enqueue_alerts, periodic_jobs, scan

__all__ = ["AlertWebhookHandler", "alert_key", "enqueue_alerts", "periodic_jobs", "scan"]
