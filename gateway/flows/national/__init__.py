"""The national public-service portal's flow: every change of a dossier synced to the portal through the outbox.

The reactions queue a ``national.sync`` message for each history entry (or record once that the sync is skipped),
the handler sends the portal what it does not have yet, and the operators' commands open a client for lookups,
resyncs and the procedure catalogue.
"""

from gateway.flows.national.handler import NationalSyncHandler
from gateway.flows.national.reactions import enqueue_sync, ordering_key, subscriptions
from gateway.flows.national.records import STEP_SKIPPED, dossier_record, is_local_step, progress_record
from gateway.flows.national.settings import NationalPortalSettings

__all__ = [
    "STEP_SKIPPED",
    "NationalPortalSettings",
    "NationalSyncHandler",
    "dossier_record",
    "enqueue_sync",
    "is_local_step",
    "ordering_key",
    "progress_record",
    "subscriptions",
]
