"""The national public-service portal's flow: every change of a dossier synced to the portal through the outbox.

The reactions queue a ``national.sync`` message for each history entry (or record once that the sync is skipped),
the handler sends the portal what it does not have yet, and the operators' commands open a client for lookups,
resyncs and the procedure catalogue.

Modules: :mod:`~gateway.flows.national.settings` (``[national_portal]``), :mod:`~gateway.flows.national.reactions`
(``subscriptions``, ``enqueue_sync``, ``ordering_key``), :mod:`~gateway.flows.national.records` (what the portal is
sent), :mod:`~gateway.flows.national.handler` (``NationalSyncHandler``). The package itself imports none of them, so
reading the configuration (which needs only the settings) loads no database or HTTP client.
"""
