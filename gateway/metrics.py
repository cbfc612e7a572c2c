"""The gateway's Prometheus metrics: one registry per process (per :class:`~gateway.runtime.Runtime`), shared by the
API, the outbox worker and the periodic jobs of that process.

Two kinds of figures:

- **events of this process**, counted when they happen: HTTP requests and their latency (by route *template* and
  status), intake latency, deliveries and their latency by upstream and outcome, retries, dead letters, signature
  verdicts, agency events, and each upstream's availability as its last delivery saw it;
- **the outbox worker's circuit breakers**, read at each scrape: which upstreams this process holds back;
- **the state of the database**, read at each scrape (:meth:`GatewayMetrics.set_snapshot`), so that every process
  sharing a database reports the same: outbox depth and oldest message's age by upstream and state, dossiers the
  deadline watch found by agency and condition (overdue and unacknowledged among them).

Labels carry codes only (route templates, agency codes, states), never a dossier code or personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from gateway import outbox
from gateway.outbox import STATES
from gateway.workers import MessageView

__all__ = ["DeliveryOutcome", "GatewayMetrics", "Snapshot"]

#: Latency buckets (seconds) of the intake (signature verification included) and of deliveries.
_SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class Snapshot:
    """What the database says at one scrape."""

    outbox_states: Mapping[str, int]
    #: ``(upstream, state) -> (messages, age in seconds of the oldest)``, for the states still to deliver.
    outbox_by_upstream: Mapping[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    #: ``agency -> condition -> dossiers``.
    watch: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


class DeliveryOutcome:
    """The outcomes a delivery is counted under."""

    DELIVERED = "delivered"
    RETRIED = "retried"
    DEAD = "dead"


class _Circuits:
    """``dvc_gateway_circuit_open``, read from a worker's breakers at each scrape (none until one is watched)."""

    NAME = "dvc_gateway_circuit_open"
    HELP = (
        "1 while this process's outbox worker sends the upstream nothing (its circuit breaker is open after failures, "
        "or the upstream asked to wait with Retry-After), 0 when it is closed or lets a probe through"
    )

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, bool]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["upstream"])
        for upstream, is_open in sorted(self.source().items()):
            family.add_metric([upstream], 1.0 if is_open else 0.0)
        yield family


class GatewayMetrics:
    """Every instrument of the gateway, in a registry of its own (tests build many gateways in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests_and_intake(self.registry)
        self._deliveries(self.registry)
        self._database_state(self.registry)
        self._circuits = _Circuits()
        self.registry.register(self._circuits)

    def watch_circuits(self, source: Callable[[], Mapping[str, bool]]) -> None:
        """Report ``source()`` (upstream → whether its breaker holds it back) at each scrape: the outbox worker's
        :meth:`~gateway.workers.CircuitBreakers.held_back`."""
        self._circuits.source = source

    def _requests_and_intake(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dvc_gateway_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "dvc_gateway_http_request_duration_seconds",
            "HTTP request duration by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.submitted = Counter(
            "dvc_gateway_dossiers_submitted", "Dossiers taken in, by agency", ["agency"], registry=registry
        )
        self.intake = Histogram(
            "dvc_gateway_intake_duration_seconds",
            "Time to take a dossier in (decoding, signature verification, storage), by agency",
            ["agency"],
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.verdicts = Counter(
            "dvc_gateway_signature_verdicts",
            "Signature verdicts, by verdict and where they were made (intake or the verify endpoint)",
            ["verdict", "source"],
            registry=registry,
        )
        self.events = Counter(
            "dvc_gateway_agency_events",
            "Agency status events accepted, by status and outcome (applied or duplicate)",
            ["status", "outcome"],
            registry=registry,
        )

    def _deliveries(self, registry: CollectorRegistry) -> None:
        self.delivery = Histogram(
            "dvc_gateway_delivery_duration_seconds",
            "Time of one delivery attempt to an upstream, by upstream and outcome",
            ["upstream", "outcome"],
            buckets=_SLOW_BUCKETS,
            registry=registry,
        )
        self.outcomes = Counter(
            "dvc_gateway_outbox_outcomes",
            "Outbox delivery outcomes recorded by this process, by upstream and outcome (delivered, retried, dead)",
            ["upstream", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "dvc_gateway_outbox_retries",
            "Deliveries that failed and will be retried, by upstream",
            ["upstream"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "dvc_gateway_outbox_dead_letters",
            "Messages parked as dead letters, by upstream",
            ["upstream"],
            registry=registry,
        )
        self.upstream_up = Gauge(
            "dvc_gateway_upstream_up",
            "1 when the last delivery to the upstream reached it (delivered or answered), 0 when it could not",
            ["upstream"],
            registry=registry,
        )

    def _database_state(self, registry: CollectorRegistry) -> None:
        self.outbox = Gauge("dvc_gateway_outbox_messages", "Outbox messages by state", ["state"], registry=registry)
        self.outbox_depth = Gauge(
            "dvc_gateway_outbox_depth",
            "Outbox messages not yet delivered, by upstream and state (pending, in_flight, dead)",
            ["upstream", "state"],
            registry=registry,
        )
        self.outbox_oldest = Gauge(
            "dvc_gateway_outbox_oldest_age_seconds",
            "Age of the oldest message not yet delivered, by upstream and state",
            ["upstream", "state"],
            registry=registry,
        )
        self.watch = Gauge(
            "dvc_gateway_deadline_watch_dossiers",
            "Dossiers the deadline watch finds, by agency and condition "
            "(unacknowledged, not_processing, near_due, overdue)",
            ["agency", "condition"],
            registry=registry,
        )
        self.overdue = Gauge(
            "dvc_gateway_dossiers_overdue",
            "Open dossiers past their due date, by agency",
            ["agency"],
            registry=registry,
        )
        self.unacknowledged = Gauge(
            "dvc_gateway_dossiers_unacknowledged",
            "Dossiers still not received after acknowledge_by, by agency",
            ["agency"],
            registry=registry,
        )
        self.database_up = Gauge(
            "dvc_gateway_database_up", "1 when the last metrics scrape could read the database", registry=registry
        )

    # -- events -------------------------------------------------------------------------------------------------

    def delivery_outcome(self, upstream: str, outcome: str, seconds: float, *, reached: bool) -> None:
        """One delivery attempt to ``upstream``: its outcome, how long it took, whether the upstream answered."""
        self.delivery.labels(upstream=upstream, outcome=outcome).observe(seconds)
        self.outcomes.labels(upstream=upstream, outcome=outcome).inc()
        if outcome == DeliveryOutcome.RETRIED:
            self.retries.labels(upstream=upstream).inc()
        elif outcome == DeliveryOutcome.DEAD:
            self.dead_letters.labels(upstream=upstream).inc()
        self.upstream_up.labels(upstream=upstream).set(1 if reached else 0)

    def observe_outbox(self, message: MessageView, state: str, seconds: float, reached: bool) -> None:
        """An outbox worker's observer (:data:`gateway.workers.Observer`): count each recorded delivery outcome."""
        outcome = {
            outbox.DONE: DeliveryOutcome.DELIVERED,
            outbox.PENDING: DeliveryOutcome.RETRIED,
            outbox.DEAD: DeliveryOutcome.DEAD,
        }.get(state)
        if outcome is not None:
            self.delivery_outcome(message.target, outcome, seconds, reached=reached)

    # -- the database's state -----------------------------------------------------------------------------------

    def set_snapshot(self, snapshot: Snapshot | None) -> None:
        """Set the gauges read from the database (``None``: it could not be read)."""
        self.database_up.set(0 if snapshot is None else 1)
        states = snapshot.outbox_states if snapshot is not None else {}
        for state in STATES:
            self.outbox.labels(state=state).set(states.get(state, 0))
        if snapshot is None:
            return
        for gauge in (self.outbox_depth, self.outbox_oldest, self.watch, self.overdue, self.unacknowledged):
            gauge.clear()
        for (upstream, state), (count, age) in snapshot.outbox_by_upstream.items():
            self.outbox_depth.labels(upstream=upstream, state=state).set(count)
            self.outbox_oldest.labels(upstream=upstream, state=state).set(age)
        for agency, conditions in snapshot.watch.items():
            for condition, count in conditions.items():
                self.watch.labels(agency=agency, condition=condition).set(count)
            self.overdue.labels(agency=agency).set(conditions.get("overdue", 0))
            self.unacknowledged.labels(agency=agency).set(conditions.get("unacknowledged", 0))
