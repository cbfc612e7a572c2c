"""The postal return flow: pickup of the originals, delivery of the result, tracking; its ``[postal]`` settings.

The reactions ask for a pickup at intake and a delivery on ``completed`` (return by post), the handler places the
orders with the postal service, and the tracking poll (with the webhook, :mod:`gateway.api.routes_postal`) feeds
:mod:`gateway.services.tracking`. The composition root builds the client (:mod:`gateway.bootstrap.upstreams`).

Modules: ``settings`` (``[postal]``), ``reactions`` (``subscriptions``, ``enqueue_order``), ``orders``, ``handler``
(``PostalOrderHandler``), ``jobs`` (``periodic_jobs``, ``poll_tracking``), ``view`` (``shipments_view``). The package
itself imports none of them, so reading the configuration (which needs only the settings) loads no database or HTTP
client.
"""
