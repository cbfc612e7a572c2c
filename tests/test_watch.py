"""The deadline watch: its rules, the read model, /metrics and the alert webhook, on a frozen clock."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.bootstrap import Composition, context_of
from gateway.domain.calendar import VIETNAM_TZ
from gateway.domain.deadlines import compute_deadlines
from gateway.domain.status import Status
from gateway.domain.watch import Condition, findings
from gateway.flows import alerts
from gateway.metrics import GatewayMetrics
from gateway.sections import CalendarSection, office_calendar
from gateway.services.watch import counts_by_agency, watch_items
from gateway.workers import OutboxWorker
from tests.api_support import ADMIN, AGENCY, PERSONAL_STRINGS, gateway_client, open_runtime
from tests.databases import BACKENDS
from tests.servers import ServerThread

CALENDAR = office_calendar(CalendarSection())
EIGHT_HOURS = timedelta(hours=8)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=VIETNAM_TZ)


def _conditions(history: list[tuple[str, datetime]], now: datetime, days: int = 15) -> set[Condition]:
    deadlines = compute_deadlines(history, days, CALENDAR)
    status = Status(history[-1][0])
    return {f.condition for f in findings(status, deadlines, now, CALENDAR, near_due=EIGHT_HOURS)}


# ---------------------------------------------------------------------------------------------------------------------
# The rules (Monday 23 November 2026 is a working day; sessions 07:00-11:30 and 13:30-17:00)


def test_unacknowledged_after_acknowledge_by_only() -> None:
    history = [("submitted", _at(23, 9))]  # acknowledge_by: Monday 17:00 (the end of the next session)
    assert _conditions(history, _at(23, 16, 59)) == set()
    assert _conditions(history, _at(24, 8)) == {Condition.UNACKNOWLEDGED}
    assert _conditions([*history, ("received", _at(23, 10))], _at(24, 8)) != {Condition.UNACKNOWLEDGED}


def test_not_processing_half_a_working_day_after_reception() -> None:
    history = [("submitted", _at(23, 8)), ("received", _at(23, 9))]
    assert _conditions(history, _at(23, 16)) == set()
    assert _conditions(history, _at(24, 8)) == {Condition.NOT_PROCESSING}
    assert _conditions([*history, ("processing", _at(23, 14))], _at(24, 8)) == set()


def test_near_due_then_overdue_and_finished_dossiers_are_not_watched() -> None:
    history = [("submitted", _at(23, 8)), ("received", _at(23, 8, 30)), ("processing", _at(23, 9))]
    # One processing day (the 24th is a day off in the official calendar): due Wednesday 25 at 17:00.
    assert CALENDAR.due_at(_at(23, 8, 30), 1) == _at(25, 17)
    assert _conditions(history, _at(23, 9, 30), days=1) == set()  # 12.5 working hours ahead
    assert _conditions(history, _at(25, 9), days=1) == {Condition.NEAR_DUE}  # 6 working hours ahead
    assert _conditions(history, _at(26, 9), days=1) == {Condition.OVERDUE}
    assert _conditions([*history, ("completed", _at(26, 8))], _at(26, 9), days=1) == set()
    waiting = [*history, ("supplement_requested", _at(25, 9))]
    assert _conditions(waiting, _at(25, 10), days=1) == set()  # the applicant is awaited: the clock is stopped


def test_a_suspension_that_stops_for_good_is_not_watched() -> None:
    history = [("submitted", _at(23, 8)), ("received", _at(23, 8, 30)), ("suspended", _at(26, 9))]  # past due
    paused = compute_deadlines(history, 1, CALENDAR)
    stopped = compute_deadlines(history, 1, CALENDAR, suspension_final=True)
    now = _at(30, 9)
    assert [f.condition for f in findings(Status.SUSPENDED, paused, now, CALENDAR, near_due=EIGHT_HOURS)] == [
        Condition.OVERDUE
    ]
    assert findings(Status.SUSPENDED, stopped, now, CALENDAR, near_due=EIGHT_HOURS) == []


# ---------------------------------------------------------------------------------------------------------------------
# The read model, /metrics and the alert webhook


class Receiver:
    """An alert webhook on 127.0.0.1 that keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], str | None]] = []

        async def hook(request: Request) -> JSONResponse:
            self.received.append((json.loads(await request.body()), request.headers.get("idempotency-key")))
            return JSONResponse({"ok": True})

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with ServerThread(hook.app) as server:
        yield hook, f"{server.base_url}/hook"


def _metric(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_unacknowledged_dossier_is_watched_measured_and_alerted_once(
    backend: str, tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    hook, url = receiver
    with open_runtime(backend, tmp_path, alerts={"webhook_url": url}) as runtime:
        async for gw in gateway_client(runtime):
            code = (await gw.submitted())["code"]
            ctx = context_of(runtime)
            assert await alerts.scan(ctx, runtime.settings.watch, gw.clock.now) == alerts.ScanResult()

            gw.clock.set(_at(24, 8))  # Tuesday morning: nobody received it by Monday 17:00
            read = functools.partial(
                watch_items, calendar=runtime.calendar, now=gw.clock.now, near_due=EIGHT_HOURS, agency_code=AGENCY
            )
            items = await runtime.db.run(read)
            assert [(i.dossier_code, i.condition) for i in items] == [(code, Condition.UNACKNOWLEDGED)]
            assert counts_by_agency(items)[AGENCY]["unacknowledged"] == 1

            text = (await gw.client.get("/metrics", headers=ADMIN)).text
            assert _metric(text, f'dvc_gateway_dossiers_unacknowledged{{agency="{AGENCY}"}}') == 1.0
            assert (
                _metric(text, f'dvc_gateway_deadline_watch_dossiers{{agency="{AGENCY}",condition="unacknowledged"}}')
                == 1.0
            )
            assert _metric(text, f'dvc_gateway_dossiers_overdue{{agency="{AGENCY}"}}') == 0.0
            assert _metric(text, f'dvc_gateway_intake_duration_seconds_count{{agency="{AGENCY}"}}') == 1.0
            assert _metric(text, 'dvc_gateway_signature_verdicts_total{source="intake",verdict="unsigned"}') == 3.0
            request = 'method="POST",route="/api/v1/dossiers",status="201"'
            assert _metric(text, f"dvc_gateway_http_request_duration_seconds_count{{{request}}}") == 1.0

            assert await alerts.scan(ctx, runtime.settings.watch, gw.clock.now) == alerts.ScanResult(fired=1)
            remembered = await alerts.scan(ctx, runtime.settings.watch, gw.clock.now)
            assert remembered == alerts.ScanResult()  # sent once
            composition = Composition(runtime)
            assert "deadline-watch" in [job.name for job in composition.periodic_jobs()]
            worker = OutboxWorker.from_settings(
                runtime.db, composition, runtime.settings.outbox, observer=runtime.metrics.observe_outbox
            )
            try:
                await worker.run_once()
            finally:
                await composition.aclose()

            assert len(hook.received) == 1
            body, key = hook.received[0]
            assert body["condition"] == "unacknowledged" and body["dossier_code"] == code
            assert body["alert"] == "firing" and "resolved_at" not in body
            assert body["agency_code"] == AGENCY and body["deadline"] == "2026-11-23T17:00:00+07:00"
            assert key == f"{code}:alert:unacknowledged"
            assert not any(secret in json.dumps(body, ensure_ascii=False) for secret in PERSONAL_STRINGS)
            text = (await gw.client.get("/metrics", headers=ADMIN)).text
            assert _metric(text, 'dvc_gateway_outbox_outcomes_total{outcome="delivered",upstream="alerts"}') == 1.0
            assert _metric(text, 'dvc_gateway_upstream_up{upstream="alerts"}') == 1.0
            assert _metric(text, f'dvc_gateway_outbox_depth{{state="pending",upstream="{AGENCY}"}}') == 1.0


async def test_the_alert_job_runs_only_with_a_webhook(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path) as runtime:
        composition = Composition(runtime)
        try:
            assert "deadline-watch" not in [job.name for job in composition.periodic_jobs()]
        finally:
            await composition.aclose()
    (tmp_path / "hook").mkdir()
    with open_runtime("sqlite", tmp_path / "hook", alerts={"webhook_url": "http://127.0.0.1:9/hook"}) as runtime:
        composition = Composition(runtime)
        try:
            assert "deadline-watch" in [job.name for job in composition.periodic_jobs()]
        finally:
            await composition.aclose()


def test_the_shipped_alert_rules_use_metrics_the_gateway_exports() -> None:
    rules = yaml.safe_load((Path(__file__).parent.parent / "examples" / "prometheus-alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"dvc_gateway_\w+", expr)}
    exported = {metric.name for metric in GatewayMetrics().registry.collect()}
    assert used and used <= exported, used - exported
    assert {"dvc_gateway_dossiers_overdue", "dvc_gateway_outbox_depth", "dvc_gateway_upstream_up"} <= used
