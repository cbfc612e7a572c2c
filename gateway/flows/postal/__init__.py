"""The postal return flow: pickup of the originals, delivery of the result, tracking; its ``[postal]`` settings.

The reactions ask for a pickup at intake and a delivery on ``completed`` (return by post), the handler places the
orders with the postal service, and the tracking poll (with the webhook, :mod:`gateway.api.routes_postal`) feeds
:mod:`gateway.services.tracking`. The composition root builds the client (:mod:`gateway.bootstrap.upstreams`).
"""

from gateway.flows.postal.handler import PostalOrderHandler
from gateway.flows.postal.jobs import periodic_jobs, poll_tracking
from gateway.flows.postal.orders import ORDER_STEPS, OrderRequest, prepare_order, store_order
from gateway.flows.postal.reactions import STEP_SKIPPED, enqueue_order, subscriptions, wanted_order
from gateway.flows.postal.settings import PostalSettings
from gateway.flows.postal.view import shipments_view

__all__ = [
    "ORDER_STEPS",
    "STEP_SKIPPED",
    "OrderRequest",
    "PostalOrderHandler",
    "PostalSettings",
    "enqueue_order",
    "periodic_jobs",
    "poll_tracking",
    "prepare_order",
    "shipments_view",
    "store_order",
    "subscriptions",
    "wanted_order",
]
