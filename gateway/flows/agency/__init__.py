"""The agencies' flow: dossiers, supplements, withdrawals and payments delivered to their one-stop systems, and
their status changes polled from those registered for polling."""

from gateway.flows.agency.handler import AgencyHandler
from gateway.flows.agency.poller import Poller, periodic_jobs, poll_due
from gateway.flows.agency.ports import AgencyClients, ChangeFeed, FeePaidReceiver

__all__ = ["AgencyClients", "AgencyHandler", "ChangeFeed", "FeePaidReceiver", "Poller", "periodic_jobs", "poll_due"]
