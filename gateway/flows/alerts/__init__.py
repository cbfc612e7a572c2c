"""The operators' alerts: the deadline watch's findings posted to ``[alerts] webhook_url`` through the outbox.

The periodic job (:mod:`gateway.flows.alerts.jobs`) turns each new finding into one outbox message, and each finding
gone into one resolution; the handler posts them. The composition root builds the webhook client.
"""

from gateway.flows.alerts.handler import AlertWebhookHandler
from gateway.flows.alerts.jobs import (
    ScanResult,
    alert_key,
    enqueue_alerts,
    periodic_jobs,
    resolution_key,
    resolve_alerts,
    scan,
)

__all__ = [
    "AlertWebhookHandler",
    "ScanResult",
    "alert_key",
    "enqueue_alerts",
    "periodic_jobs",
    "resolution_key",
    "resolve_alerts",
    "scan",
]
