"""Intake (``POST /api/v1/dossiers``): the answer, codes, idempotency, atomicity.

Through ``httpx.AsyncClient`` on the ASGI app, on SQLite and (when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set) on
PostgreSQL for the code allocation and the intake path. Refusals, files and signatures are in
``tests/test_intake_checks.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from gateway import audit
from gateway.cli import main
from gateway.domain.codes import parse_dossier_code
from gateway.services.intake import allocate_code
from gateway.store.models import (
    AuditEntry,
    Blob,
    Component,
    Dossier,
    OutboxMessage,
)
from tests.api_support import (
    AGENCY,
    AGENCY3,
    EXAMPLES,
    NOW,
    PERSONAL_STRINGS,
    PROCEDURE,
    Gateway,
    component,
    gateway_client,
    open_runtime,
    pdf,
    submission,
)
from tests.databases import BACKENDS
from tests.intake_support import count, counts

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

CODE_RE = re.compile(r"^000\.00\.23\.H38-261123-\d{4}$")
OFFSET_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+07:00$")


def outbox_rows(gw: Gateway) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# ---------------------------------------------------------------------------------------------------------------------
# The answer


async def test_submission_answers_201_with_the_full_dossier(gw: Gateway) -> None:
    response = await gw.submit()
    assert response.status_code == 201, response.text
    body = response.json()
    assert CODE_RE.match(body["code"])
    assert response.headers["location"] == f"/api/v1/dossiers/{body['code']}"
    assert body["status"] == "submitted" and body["national_status_code"] == 1
    assert body["procedure_code"] == PROCEDURE
    assert body["agency_code"] == body["lead_agency_code"] == AGENCY
    assert body["received_at"] is None
    assert body["submitted_at"] == "2026-11-23T09:00:00+07:00"
    assert body["acknowledge_by"] == "2026-11-23T17:00:00+07:00"  # half a working day: the afternoon session's end
    assert body["due_at"] == "2026-12-15T17:00:00+07:00"  # provisional: 15 working days from arrival
    assert OFFSET_RE.match(body["due_at"])
    assert body["overdue"] is False and body["repeated_supplement"] is False
    assert body["originals_check_required"] is True
    assert [c["code"] for c in body["components"]] == ["TP1", "TP2", "TP3"]
    first = body["components"][0]
    assert first["name"] == "Đơn đề nghị cấp giấy phép xây dựng"  # the catalogue's name
    assert first["filename"] == "tp1.pdf" and first["content_type"] == "application/pdf"
    assert first["size"] == len(pdf("Thanh phan TP1")) and len(first["sha256"]) == 64 and first["revision"] == 1
    verification = first["verification"]
    assert set(verification) >= {"file", "format", "signed", "verdict", "originals_check_required", "message"}
    assert verification["verdict"] == "unsigned" and verification["originals_check_required"] is True
    assert body["fees"] == [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000, "paid": False}]
    [entry] = [item for item in body["history"] if "step" not in item]
    # No national portal, payment or postal service configured: their steps show as skipped, once.
    skipped = {item["step"] for item in body["history"] if "step" in item}
    assert skipped == {"national_sync_skipped", "payment_skipped"} | (
        {"postal_skipped"} if body["return_method"] == "post" else set()
    )
    assert entry["status"] == "submitted" and entry["actor"] == "portal" and entry["at"] == body["submitted_at"]
    assert "TP1 must be digitally signed" in entry["note"]  # must_be_signed and unsigned: kept, originals required
    assert body["applicant"]["full_name"] == "Nguyễn Thị Hồng Nhung"
    assert await gw.get(body["code"]) == body


async def test_extra_fields_are_kept(gw: Gateway) -> None:
    body = await gw.submitted(submission(portal_reference="DVC-2026-000123", metadata={"kiosk": 7}))
    assert body["extra"] == {"portal_reference": "DVC-2026-000123", "metadata": {"kiosk": 7}}


async def test_delivery_is_enqueued_in_the_same_transaction(gw: Gateway) -> None:
    body = await gw.submitted()
    [message] = outbox_rows(gw)
    assert message.kind == "agency.deliver" and message.target == AGENCY
    assert message.payload == {"dossier_code": body["code"], "agency_code": AGENCY}
    assert message.idempotency_key == f"{body['code']}:deliver:{AGENCY}"
    assert message.ordering_key == body["code"]
    with gw.db.unit_of_work() as session:
        assert audit.verify(session) == []
        [entry] = session.scalars(select(AuditEntry)).all()
        assert entry.action == "dossier.submitted" and entry.subject == body["code"]
        assert not any(s in str(entry.details) for s in PERSONAL_STRINGS)


async def test_portal_webhook_only_when_configured(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, portal={"webhook_url": "https://portal.example.vn/hooks"}) as runtime:
        async for gw in gateway_client(runtime):
            body = await gw.submitted()
            kinds = {m.kind: m for m in outbox_rows(gw)}
            assert set(kinds) == {"agency.deliver", "portal.webhook"}
            webhook = kinds["portal.webhook"]
            assert webhook.target == "portal" and webhook.ordering_key == body["code"]
            assert webhook.payload["event"]["status"] == "submitted"
            assert webhook.idempotency_key.startswith(f"{body['code']}:webhook:")


async def test_identical_files_are_stored_once(gw: Gateway) -> None:
    await gw.submitted()
    await gw.submitted()
    assert count(gw, Blob) == 3
    assert count(gw, Component) == 6


@pytest.mark.parametrize("backend", [p for p in BACKENDS])
async def test_intake_path_on_each_database(backend: str, tmp_path: Path) -> None:
    with open_runtime(backend, tmp_path) as runtime:
        async for gw in gateway_client(runtime):
            first = await gw.submitted()
            second = await gw.submitted(submission(components=[component("TP1"), component("TP2"), component("TP3")]))
            assert first["code"].endswith("-0001") and second["code"].endswith("-0002")
            assert (await gw.client.get(f"/api/v1/lookup/{first['code']}")).status_code == 200
            with gw.db.unit_of_work() as session:
                assert audit.verify(session) == []


# ---------------------------------------------------------------------------------------------------------------------
# Dossier codes


async def test_fifty_concurrent_submissions_get_unique_codes(any_gw: Gateway) -> None:
    responses = await asyncio.gather(*(any_gw.submit() for _ in range(50)))
    assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses if r.status_code != 201][:1]
    codes = [r.json()["code"] for r in responses]
    assert len(set(codes)) == 50
    assert all(CODE_RE.match(code) for code in codes)
    assert sorted(parse_dossier_code(code).sequence for code in codes) == list(range(1, 51))
    with any_gw.db.unit_of_work() as session:
        assert audit.verify(session) == []
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 50


@pytest.mark.parametrize("backend", [p for p in BACKENDS])
def test_code_allocation_is_unique_across_threads(backend: str, tmp_path: Path) -> None:
    with open_runtime(backend, tmp_path) as runtime:
        codes: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(50)

        def allocate() -> None:
            try:
                barrier.wait()
                with runtime.db.unit_of_work() as session:
                    audit.lock_for_write(session)
                    codes.append(allocate_code(session, AGENCY, NOW))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=allocate) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert sorted(codes) == [f"{AGENCY}-261123-{n:04d}" for n in range(1, 51)]


def test_codes_follow_the_day_in_vietnam(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    with open_runtime("sqlite", tmp_path) as runtime, runtime.db.unit_of_work() as session:
        # 23 November 2026, 18:30 UTC is already 24 November in Hà Nội.
        assert allocate_code(session, AGENCY, datetime(2026, 11, 23, 18, 30, tzinfo=UTC)) == f"{AGENCY}-261124-0001"
        assert allocate_code(session, AGENCY3, NOW) == f"{AGENCY3}-261123-0001"


# ---------------------------------------------------------------------------------------------------------------------
# Idempotency-Key


async def test_a_repeated_key_returns_the_first_answer_and_creates_nothing(gw: Gateway) -> None:
    first = await gw.submit(key="portal-req-1")
    assert first.status_code == 201
    before = counts(gw)
    gw.clock.advance(minutes=5)
    again = await gw.submit(key="portal-req-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert counts(gw) == before


async def test_the_same_key_with_another_body_is_refused(gw: Gateway) -> None:
    await gw.submit(key="portal-req-2")
    before = counts(gw)
    response = await gw.submit(submission(summary="Một hồ sơ khác"), key="portal-req-2")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert "Idempotency-Key" in error["message"] and "different request" in error["message"]
    assert error["details"][0]["field"] == "Idempotency-Key"
    assert counts(gw) == before


async def test_concurrent_repeats_of_one_key_make_one_dossier(any_gw: Gateway) -> None:
    responses = await asyncio.gather(*(any_gw.submit(key="portal-req-3") for _ in range(8)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["code"] for r in responses}) == 1
    assert count(any_gw, Dossier) == 1


async def test_keys_are_scoped_and_checked(gw: Gateway) -> None:
    response = await gw.submit(key="bad key with spaces")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "Idempotency-Key"


# ---------------------------------------------------------------------------------------------------------------------
# Atomicity


@pytest.mark.parametrize("target", ["gateway.audit.append", "gateway.outbox.add"])
async def test_a_failure_after_the_dossier_insert_rolls_everything_back(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:

    before = counts(gw)

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk full while writing the applicant Nguyễn Thị Hồng Nhung")

    monkeypatch.setattr(target, fail)
    response = await gw.submit(key="will-fail")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert "Nguyễn" not in response.text and "disk full" not in response.text
    assert counts(gw) == before  # no dossier, component, blob, sequence, message, audit entry or key: nothing

    monkeypatch.undo()
    retried = await gw.submit(key="will-fail")
    assert retried.status_code == 201
    assert retried.json()["code"].endswith("-0001")  # the failed attempt gave its number back


async def test_personal_data_is_never_logged(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = await gw.submitted()
    await gw.client.get(f"/api/v1/lookup/{body['code']}")
    await gw.get(body["code"])
    await gw.submit(submission(fees=[]))  # a refusal
    assert caplog.records  # the access log wrote something
    for text in PERSONAL_STRINGS:
        assert text not in caplog.text


async def test_submitting_needs_the_portal_token(gw: Gateway) -> None:
    from tests.api_support import ADMIN, AGENCY_AUTH

    assert (await gw.client.post("/api/v1/dossiers", json=submission())).status_code == 401
    assert (await gw.client.post("/api/v1/dossiers", json=submission(), headers=AGENCY_AUTH)).status_code == 403
    assert (await gw.client.post("/api/v1/dossiers", json=submission(), headers=ADMIN)).status_code == 403
    assert count(gw, Dossier) == 0


def test_base64_with_line_breaks_is_accepted() -> None:
    from gateway.services.files import _decode_base64

    data = pdf("wrapped")
    wrapped = "\n".join(base64.encodebytes(data).decode().split("\n"))
    errors: list[dict[str, str]] = []
    assert _decode_base64(wrapped, field="f", max_bytes=10_000, errors=errors, what="file") == data
    assert errors == []


async def test_a_dossier_with_files_is_written_off_the_event_loop(gw: Gateway) -> None:
    """Files' blobs are large: the unit of work that stores them runs on a worker thread, never on the loop's."""
    threads: set[int] = set()

    def noted(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO blobs"):
            threads.add(threading.get_ident())

    event.listen(gw.db.engine, "before_cursor_execute", noted)
    try:
        await gw.submitted()
    finally:
        event.remove(gw.db.engine, "before_cursor_execute", noted)
    assert threads and threading.get_ident() not in threads


# ---------------------------------------------------------------------------------------------------------------------
# The catalogue changed while the gateway runs


@pytest.mark.parametrize("backend", [p for p in BACKENDS])
async def test_a_catalogue_imported_while_the_gateway_runs_applies_to_the_next_dossier(
    backend: str, tmp_path: Path
) -> None:
    # The gateway keeps each catalogue entry it built while the entry's row is unchanged: an import by the CLI (its
    # own connection) must reach the very next dossier, and nothing before it.
    with open_runtime(backend, tmp_path) as runtime:
        async for gw in gateway_client(runtime):
            before = await gw.submitted()
            entries = json.loads(EXAMPLES.read_text(encoding="utf-8"))
            for entry in entries:
                if entry["code"] == PROCEDURE:
                    entry["processing_days"] += 10
            changed = tmp_path / "catalogue.json"
            changed.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
            config = tmp_path / "cli.toml"
            config.write_text(f"[database]\nurl = {json.dumps(runtime.settings.database.url)}\n", encoding="utf-8")
            assert main(["procedure", "import", str(changed), "--config", str(config)]) == 0
            after = await gw.submitted()
    assert before["submitted_at"] == after["submitted_at"]  # the test's clock stands still
    assert after["due_at"] > before["due_at"]
