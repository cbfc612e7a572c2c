"""Network faults between the outbox workers and each kind of upstream.

Every upstream (REST agency, SOAP agency, national portal, payment platform, postal service) is its simulator on
127.0.0.1 behind a :class:`~tests.fault_proxy.FaultProxy`, reached through the real adapter over a client from the
real :class:`~adapters.http.ClientFactory` with short timeouts. An :class:`~gateway.workers.OutboxWorker` delivers
outbox messages through it while the proxy adds latency, resets the answer mid-body, black-holes the connection and
refuses it, then recovers. The outcomes are the outbox's: retry, dead letter, circuit open, then delivery after
recovery; every attempt ends within its timeout. Another test shows one agency black-holed does not hold another
back, and a last one puts an upstream in a network namespace behind ``tc netem`` where the machine allows it.

Time in the outbox (retry times) and in the breaker (cooldown) is a controlled clock; the network waits are real
but bounded. Nothing asserts a timing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from adapters.http import ClientFactory, ClientSettings, bearer
from adapters.national_portal import NationalPortalClient
from adapters.national_portal.wire import Channel, DossierRecord
from adapters.netguard import AddressPolicy
from adapters.onestop import RestOneStopClient
from adapters.onestop.soap import SoapOneStopClient
from adapters.payment import VNPayProvider
from adapters.postal import PostalClient
from gateway import outbox
from gateway.outbox import RetryPolicy
from gateway.simulators import agency as agency_sim
from gateway.simulators import national_portal as national_sim
from gateway.simulators import payment as payment_sim
from gateway.simulators import postal as postal_sim
from gateway.simulators.soap_agency import create_soap_app
from gateway.store.database import Database
from gateway.workers import CLOSED, OPEN, CircuitBreakerSettings, MessageView, OutboxWorker
from tests.fault_proxy import FaultProxy
from tests.servers import ServerThread
from tests.soap_support import dossier as soap_dossier

LOCAL = AddressPolicy(allow_private=True)
AGENCY = "000.00.23.H38"
TOKEN = "fault-test-agency-token"
PORTAL = {"username": "lgsp-h38", "password": "mat-khau-portal", "dstcode": "H38", "madonvi": "000.00.00.H38"}
MERCHANT, MERCHANT_SECRET = "DVCH38TM", "ZXCVBNMASDFGHJKLQWERTYUIOP123456"
POSTAL_SECRET = "postal-fault-test-secret"
SENDER = {"name": "Nguyễn Văn A", "phone": "0912345678", "address": "12 Trần Phú, Hà Tĩnh"}
RECEIVER = {"name": "Bộ phận Một cửa tỉnh", "phone": "02393123456", "address": "1 Nguyễn Du, Hà Tĩnh"}
#: Every exchange through the proxy ends within about a second: the adapters' timeouts, not the test's patience.
TIMEOUTS = {"timeout_seconds": 0.5, "connect_timeout_seconds": 0.5, "total_timeout_seconds": 1.0}
#: The most one faulty attempt may take, however the network misbehaves (far above the timeouts above).
ATTEMPT_BOUND = 8.0

Operation = Callable[[MessageView], Awaitable[None]]


# ----------------------------------------------------------------------------------------------------------------------
# The upstreams


def settings(url: str) -> ClientSettings:
    return ClientSettings(base_url=url, address_policy=LOCAL, **TIMEOUTS)  # type: ignore[arg-type]


def rest_agency(url: str, http: httpx.AsyncClient) -> Operation:
    client = RestOneStopClient(http, agency_code=AGENCY)

    async def deliver(message: MessageView) -> None:
        await client.deliver(soap_dossier(message.payload["code"]), message.idempotency_key)

    return deliver


def soap_agency(url: str, http: httpx.AsyncClient) -> Operation:
    client = SoapOneStopClient(http, agency_code=AGENCY, wsdl=f"{url}/soap?wsdl", address_policy=LOCAL)

    async def deliver(message: MessageView) -> None:
        await client.deliver(soap_dossier(message.payload["code"]), message.idempotency_key)

    return deliver


def national_portal(url: str, http: httpx.AsyncClient) -> Operation:
    client = NationalPortalClient(http, **PORTAL)
    received = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)

    async def sync(message: MessageView) -> None:
        record = DossierRecord(
            code=message.payload["code"],
            procedure_code="1.009794",
            status_code=2,
            received_at=received,
            due_at=received + timedelta(days=15),
            channel=Channel.ONLINE,
            procedure_name="Cấp giấy phép xây dựng",
            applicant_name="Nguyễn Văn A",
            phone="0912345678",
        )
        result = await client.sync_dossiers([record], updating=False)
        assert result.ok, result.failed

    return sync


def payment(url: str, http: httpx.AsyncClient) -> Operation:
    provider = VNPayProvider(
        http, merchant_code=MERCHANT, secret=MERCHANT_SECRET, payment_url=f"{url}{payment_sim.PAYMENT_PAGE_PATH}"
    )

    async def query(message: MessageView) -> None:
        await provider.query(message.payload["code"])

    return query


def postal(url: str, http: httpx.AsyncClient) -> Operation:
    client = PostalClient(http, secret=POSTAL_SECRET, attempts=1)

    async def order(message: MessageView) -> None:
        items = [{"name": "Bản gốc giấy tờ đối chiếu", "quantity": 1}]
        await client.create_order("pickup", message.payload["code"], SENDER, RECEIVER, items, message.idempotency_key)

    return order


@dataclass(frozen=True)
class Kind:
    name: str
    target: str
    app: Callable[[], Any]
    operation: Callable[[str, httpx.AsyncClient], Operation]
    auth: httpx.Auth | None = None


KINDS = [
    Kind("rest_agency", f"agency:{AGENCY}", lambda: agency_sim.create_app(token=TOKEN), rest_agency, bearer(TOKEN)),
    Kind("soap_agency", f"agency:{AGENCY}", lambda: create_soap_app(token=TOKEN), soap_agency, bearer(TOKEN)),
    Kind("national_portal", "national_portal", lambda: national_sim.create_app(**PORTAL, seed=7), national_portal),
    Kind(
        "payment",
        "payment",
        lambda: payment_sim.create_app(merchant_code=MERCHANT, secret=MERCHANT_SECRET),
        payment,
    ),
    Kind("postal", "postal", lambda: postal_sim.create_app(secret=POSTAL_SECRET), postal),
]


# ----------------------------------------------------------------------------------------------------------------------
# The harness


@dataclass
class Clock:
    """The outbox's wall clock and the breakers' monotonic clock, moved by the test."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class Dispatcher:
    """Delivers each message through its target's operation."""

    def __init__(self, operations: dict[str, Operation]) -> None:
        self.operations = operations

    async def dispatch(self, message: MessageView) -> None:
        await self.operations[message.target](message)


@asynccontextmanager
async def upstream(kind: Kind, simulator: list[Any] | None = None) -> AsyncIterator[tuple[FaultProxy, Operation]]:
    """``kind``'s simulator behind a fault proxy, and the adapter operation that reaches it through the proxy; the
    simulator object is appended to ``simulator`` when given."""
    with ServerThread(kind.app()) as server:
        if simulator is not None:
            simulator.append(server.app.state.simulator)
        port = int(server.base_url.rsplit(":", 1)[1])
        async with FaultProxy("127.0.0.1", port) as proxy:
            factory = ClientFactory()
            async with factory.client(kind.target, settings(proxy.url), auth=kind.auth) as http:
                yield proxy, kind.operation(proxy.url, http)


def enqueue(db: Database, target: str, code: str, clock: Clock) -> int:
    with db.unit_of_work() as session:
        message = outbox.enqueue(
            session,
            kind="fault.test",
            target=target,
            payload={"code": code},
            idempotency_key=outbox.message_key(code, "deliver"),
            not_before=clock.now,
        )
        return message.id


def state(db: Database, message_id: int) -> tuple[str, int, str | None]:
    with db.unit_of_work() as session:
        message = outbox.get(session, message_id)
        assert message is not None
        return message.state, message.attempts, message.last_error


async def attempt(worker: OutboxWorker) -> int:
    """One claim-and-deliver round, which the adapters' timeouts must end well within the bound."""
    with anyio.fail_after(ATTEMPT_BOUND):
        return await worker.run_once()


def make_worker(db: Database, dispatcher: Dispatcher, clock: Clock) -> OutboxWorker:
    return OutboxWorker(
        db,
        dispatcher,
        worker_id="fault-worker",
        policy=RetryPolicy(max_attempts=3, initial_seconds=1, max_seconds=1, jitter_seconds=0, lease_seconds=10),
        breaker=CircuitBreakerSettings(failure_threshold=3, cooldown_seconds=30),
        delivery_timeout=5,
        clock=lambda: clock.now,
        monotonic=lambda: clock.mono,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Each upstream kind: retry, dead letter, circuit open, recovery


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_faults_end_in_retry_dead_letter_or_open_circuit_and_delivery_resumes(kind: Kind, db: Database) -> None:
    clock = Clock()
    async with upstream(kind) as (proxy, operation):
        worker = make_worker(db, Dispatcher({kind.target: operation}), clock)
        code = f"{AGENCY}-261203-{uuid.uuid4().int % 10000:04d}"

        # Slow but within the timeouts: delivered.
        proxy.set("latency", 0.2)
        slow = enqueue(db, kind.target, f"{code}-slow", clock)
        assert await attempt(worker) == 1
        assert state(db, slow)[0] == outbox.DONE, state(db, slow)

        # Answer cut mid-body, then no answer at all, then refused: three retryable failures in a row.
        faulty = enqueue(db, kind.target, code, clock)
        outcomes = []
        for mode in ("reset", "blackhole", "refuse"):
            proxy.set(mode)  # type: ignore[arg-type]
            began = time.monotonic()
            assert await attempt(worker) == 1
            outcomes.append((mode, *state(db, faulty), round(time.monotonic() - began, 2)))
            clock.advance(1.5)  # past the retry's backoff
        assert [o[1:3] for o in outcomes] == [(outbox.PENDING, 1), (outbox.PENDING, 2), (outbox.DEAD, 3)], outcomes
        assert all(o[3] for o in outcomes)  # each failure recorded its cause
        # The third failure in a row opened the target's circuit: nothing more is claimed for it.
        assert worker.breaker_state(kind.target) == OPEN
        waiting = enqueue(db, kind.target, f"{code}-next", clock)
        assert await attempt(worker) == 0
        assert state(db, waiting)[:2] == (outbox.PENDING, 0)  # waits without spending an attempt

        # Recovery: the network is back; after the cooldown one probe closes the circuit, the dead letter is redriven.
        proxy.set("pass")
        recovered = time.monotonic()
        clock.advance(31)
        assert await attempt(worker) == 1
        assert state(db, waiting)[0] == outbox.DONE
        assert worker.breaker_state(kind.target) == CLOSED
        with db.unit_of_work() as session:
            assert outbox.redrive(session, faulty) == 1
        assert await attempt(worker) == 1
        assert state(db, faulty)[0] == outbox.DONE
        recovery = time.monotonic() - recovered
    print(
        f"\n{kind.name}: "
        + ", ".join(
            f"{mode} → {st} after attempt {n} ({secs} s: {err.split(':')[0]})" for mode, st, n, err, secs in outcomes
        )
        + f"; circuit open, next message held with 0 attempts; recovered in {recovery:.2f} s after the network returned"
    )


async def test_reset_mid_answer_is_delivered_again_and_applied_once_by_the_agency(db: Database) -> None:
    clock = Clock()
    kind = KINDS[0]
    simulators: list[Any] = []
    async with upstream(kind, simulators) as (proxy, operation):
        worker = make_worker(db, Dispatcher({kind.target: operation}), clock)
        proxy.set("reset")
        message = enqueue(db, kind.target, f"{AGENCY}-261203-0001", clock)
        assert await attempt(worker) == 1
        assert state(db, message)[:2] == (outbox.PENDING, 1)
        proxy.set("pass")
        clock.advance(1.5)
        assert await attempt(worker) == 1
        assert state(db, message)[0] == outbox.DONE
    assert proxy.resets == 1
    # The first attempt reached the agency (its answer was cut): the second carried the same key and changed nothing.
    assert simulators[0].effects["deliver"] == 1


# ----------------------------------------------------------------------------------------------------------------------
# One agency black-holed, another keeps flowing


async def test_a_black_holed_agency_does_not_hold_back_another(db: Database) -> None:
    """Agency A stops answering; agency B's messages flow through the same worker meanwhile (real clock)."""
    kind = KINDS[0]
    per_agency = 30
    async with upstream(kind) as (proxy_a, deliver_a), upstream(kind) as (_proxy_b, deliver_b):
        dispatcher = Dispatcher({"agency:A": deliver_a, "agency:B": deliver_b})
        worker = OutboxWorker(
            db,
            dispatcher,
            policy=RetryPolicy(
                max_attempts=50, initial_seconds=0.2, max_seconds=0.5, jitter_seconds=0, lease_seconds=10
            ),
            breaker=CircuitBreakerSettings(failure_threshold=4, cooldown_seconds=60),
            delivery_timeout=5,
            batch=10,
            concurrency_per_target=4,
            poll_interval=0.05,
        )

        def counts(target: str) -> dict[str, int]:
            with db.unit_of_work() as session:
                found = outbox.list_messages(session, target=target, limit=3 * per_agency)
            tally = dict.fromkeys(outbox.STATES, 0)
            for message in found:
                tally[message.state] += 1
            return tally

        async def batch_of_b(round_: int) -> float:
            """Enqueue ``per_agency`` messages for each agency; how long B's took to be delivered."""
            began = time.monotonic()
            for target in ("agency:A", "agency:B"):
                for n in range(per_agency):
                    enqueue(db, target, f"{AGENCY}-{target[-1]}{round_}{n:04d}", Clock())
            worker.notify()
            with anyio.fail_after(30):
                while counts("agency:B")["done"] < round_ * per_agency:
                    await anyio.sleep(0.05)
            return time.monotonic() - began

        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run, stop)
            healthy = await batch_of_b(1)  # both agencies answer
            with anyio.fail_after(30):
                while counts("agency:A")["done"] < per_agency:
                    await anyio.sleep(0.05)
            proxy_a.set("blackhole")
            black_holed = await batch_of_b(2)  # A never answers; B's batch does not wait for it
            with anyio.fail_after(30):  # A's timeouts accumulate until its circuit opens (B may be done first)
                while worker.breaker_state("agency:A") != OPEN:
                    await anyio.sleep(0.05)
            a_counts = counts("agency:A")
            a_state = worker.breaker_state("agency:A")
            stop.set()
    assert counts("agency:B")["done"] == 2 * per_agency
    # A's second batch waits for it, none lost, none dead; its failures opened its circuit only.
    assert a_counts["done"] == per_agency and a_counts["dead"] == 0
    assert a_counts["pending"] + a_counts["in_flight"] == per_agency
    assert a_state == OPEN
    assert worker.breaker_state("agency:B") == CLOSED
    print(
        f"\nblack hole: agency B's {per_agency} messages took {healthy:.2f} s with both agencies up and "
        f"{black_holed:.2f} s while agency A was black-holed (A's {per_agency}: waiting, circuit {a_state})"
    )


# ----------------------------------------------------------------------------------------------------------------------
# A namespace behind tc netem (where the machine allows it)


def netem_unavailable() -> str | None:
    """Why a namespace with ``tc netem`` cannot be used here, or None."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces and tc need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' is missing (apt-get install iproute2)"
    probe = f"dvcprobe{os.getpid() % 100000}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
        if made.returncode != 0:
            return f"cannot create a network namespace: {made.stderr.strip()}"
        qdisc = subprocess.run(
            ["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if qdisc.returncode != 0:
            return f"tc netem refused by the kernel (sch_netem missing?): {qdisc.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=20)


@pytest.fixture
def netem_namespace() -> Iterator[tuple[str, str, str]]:
    """A namespace joined to this one by a veth pair (10.213.0.1 here, .2 there): (namespace, host veth, address)."""
    reason = netem_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = f"{os.getpid() % 100000}"
    namespace, host_if, ns_if = f"dvcfault{tag}", f"dvh{tag}", f"dvn{tag}"
    sh("ip", "netns", "add", namespace)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", namespace)
        sh("ip", "addr", "add", "10.213.0.1/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", namespace, "ip", "addr", "add", "10.213.0.2/30", "dev", ns_if)
        sh("ip", "netns", "exec", namespace, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        yield namespace, host_if, "10.213.0.2"
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=20)


async def test_agency_behind_netem_loss_and_delay_is_retried_then_delivered(
    netem_namespace: tuple[str, str, str], db: Database, tmp_path: Path
) -> None:
    namespace, host_if, address = netem_namespace
    serve = (
        "import sys, uvicorn; from gateway.simulators.agency import create_app; "
        "uvicorn.run(create_app(token=sys.argv[1]), host=sys.argv[2], port=8080, log_level='info')"
    )
    simulator = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", serve, TOKEN, address],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert simulator.stderr is not None
        with anyio.fail_after(60):
            while "Uvicorn running" not in (line := await anyio.to_thread.run_sync(simulator.stderr.readline)):
                assert line, "the simulator in the namespace did not start"
        url = f"http://{address}:8080"
        clock = Clock()
        sh("tc", "qdisc", "add", "dev", host_if, "root", "netem", "loss", "100%")
        async with ClientFactory().client("agency:netem", settings(url), auth=bearer(TOKEN)) as http:
            worker = make_worker(db, Dispatcher({"agency:netem": rest_agency(url, http)}), clock)
            message = enqueue(db, "agency:netem", f"{AGENCY}-261203-0042", clock)
            assert await attempt(worker) == 1  # every packet lost: the attempt times out
            assert state(db, message)[:2] == (outbox.PENDING, 1)
            sh("tc", "qdisc", "change", "dev", host_if, "root", "netem", "delay", "100ms", "loss", "5%")
            clock.advance(1.5)
            with anyio.fail_after(30):
                while state(db, message)[0] != outbox.DONE:
                    assert state(db, message)[0] == outbox.PENDING
                    await worker.run_once()
                    clock.advance(1.5)
    finally:
        subprocess.run(["tc", "qdisc", "del", "dev", host_if, "root"], capture_output=True, timeout=20)
        simulator.kill()
        simulator.wait(timeout=30)
