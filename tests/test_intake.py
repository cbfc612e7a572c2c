"""Intake (``POST /api/v1/dossiers``): the answer, codes, idempotency, every refusal, files, signatures, atomicity.

Through ``httpx.AsyncClient`` on the ASGI app, on SQLite and (when ``DVC_GATEWAY_TEST_POSTGRES_URL`` is set) on
PostgreSQL for the code allocation and the intake path.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import re
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import audit
from gateway.domain.codes import parse_dossier_code
from gateway.services.files import sanitise_filename
from gateway.services.intake import allocate_code
from gateway.store.models import (
    AuditEntry,
    Blob,
    Component,
    DaySequence,
    Dossier,
    Fee,
    HistoryEntry,
    IdempotencyRecord,
    OutboxMessage,
)
from signing.sniff import reconcile_content_type, sniff_content_type
from tests.api_support import (
    AGENCY,
    AGENCY3,
    BACKENDS,
    NOW,
    PERSONAL_STRINGS,
    PORTAL,
    PROCEDURE,
    UNREGISTERED,
    Gateway,
    b64,
    component,
    gateway_client,
    open_runtime,
    pdf,
    submission,
)
from tests.documents import make_form, sign_cms, sign_pdf

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures

CODE_RE = re.compile(r"^000\.00\.23\.H38-261123-\d{4}$")
OFFSET_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+07:00$")

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>'
)


def count(gw: Gateway, model: Any) -> int:
    with gw.db.unit_of_work() as session:
        return session.scalar(select(func.count()).select_from(model))


def counts(gw: Gateway) -> dict[str, int]:
    models = (Dossier, Component, Fee, HistoryEntry, Blob, OutboxMessage, AuditEntry, IdempotencyRecord, DaySequence)
    return {model.__name__: count(gw, model) for model in models}


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
# Refusals (422)


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    body = dict(body)
    del body[key]
    return body


REFUSALS = {
    "unknown procedure": (submission(procedure_code="9.999999"), "procedure_code", "unknown procedure"),
    "agency not competent": (submission(agency_code=AGENCY3), "agency_code", "not competent"),
    "agency not registered": (
        submission(
            procedure_code="1.001193",
            agency_code=UNREGISTERED,
            fees=None,
            components=[component("TP1"), component("TP2"), component("TP3")],
        ),
        "agency_code",
        "not registered",
    ),
    "missing required component": (
        submission(components=[component("TP1"), component("TP2")]),
        "components",
        "required component TP3",
    ),
    "unknown component": (
        submission(components=[component("TP1"), component("TP2"), component("TP3"), component("TP9")]),
        "components[3].code",
        "unknown component TP9",
    ),
    "repeated component": (
        submission(components=[component("TP1"), component("TP2"), component("TP3"), component("TP2")]),
        "components[3].code",
        "more than once",
    ),
    "bad base64": (
        submission(components=[component("TP1"), component("TP2", content_base64="not*base64!"), component("TP3")]),
        "components[1].content_base64",
        "not valid base64",
    ),
    "empty file": (
        submission(components=[component("TP1"), component("TP2", content_base64=""), component("TP3")]),
        "components[1].content_base64",
        "empty",
    ),
    "type contradicting the content": (
        submission(components=[component("TP1"), component("TP2", data=PNG), component("TP3")]),
        "components[1].content_type",
        "the content is image/png",
    ),
    "fee amount": (
        submission(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 100000}]),
        "fees[0].amount",
        "must be 150000 VND",
    ),
    "fee as a float": (
        submission(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 150000.0}]),
        "fees[0].amount",
        "integer",
    ),
    "unknown fee": (
        submission(fees=[{"code": "LP1", "amount": 150000}, {"code": "X9", "amount": 1}]),
        "fees[1].code",
        "unknown fee",
    ),
    "missing fee": (submission(fees=[]), "fees", "fee LP1"),
    "missing applicant": (_without(submission(), "applicant"), "applicant", "missing"),
    "applicant without a name": (submission(applicant={"kind": "citizen"}), "applicant.full_name", "missing"),
    "wrong type": (submission(procedure_code=1009794), "procedure_code", "string"),
    "unknown component field": (
        submission(components=[component("TP1", path="/etc/passwd"), component("TP2"), component("TP3")]),
        "components[0].path",
        "unknown field",
    ),
    "post without an address": (submission(delivery_address=None), "delivery_address", "required"),
    "unknown channel": (submission(channel="fax"), "channel", ""),
}


@pytest.mark.parametrize(("body", "field", "message"), list(REFUSALS.values()), ids=list(REFUSALS))
async def test_refusals_are_422_with_field_details_and_change_nothing(
    gw: Gateway, body: dict[str, Any], field: str, message: str
) -> None:
    before = counts(gw)
    response = await gw.submit(body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert any(d["field"] == field and message in d["message"] for d in error["details"]), error["details"]
    assert counts(gw) == before


async def test_every_problem_is_reported_at_once(gw: Gateway) -> None:
    body = submission(
        components=[component("TP1", content_base64="%%%"), component("TP9")],
        fees=[{"code": "LP1", "amount": 1}],
    )
    response = await gw.submit(body)
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert {"components[1].code", "components", "fees[0].amount", "components[0].content_base64"} <= fields


async def test_oversized_files_are_refused(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, server={"max_file_bytes": 2000}) as runtime:
        async for gw in gateway_client(runtime):
            big = component("TP2", data=pdf("x") + b"%" * 3000)
            response = await gw.submit(submission(components=[component("TP1"), big, component("TP3")]))
            assert response.status_code == 422
            [detail] = response.json()["error"]["details"]
            assert detail == {"field": "components[1].content_base64", "message": "the file is larger than 2000 bytes"}


async def test_a_body_that_is_not_an_object_is_422(gw: Gateway) -> None:
    response = await gw.client.post("/api/v1/dossiers", json=[submission()], headers=PORTAL)
    assert response.status_code == 422
    assert "expected a JSON object" in response.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------------
# File names and content types


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("don.pdf", "don.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\a\\Đơn đề nghị.pdf", "Đơn đề nghị.pdf"),
        ("evil\u202efdp.exe", "evilfdp.exe"),
        ("a\x00b\nc.pdf", "abc.pdf"),
        ("..", "TP1.pdf"),
        ("/", "TP1.pdf"),
        ("", "TP1.pdf"),
        (None, "TP1.pdf"),
        (".htaccess", "htaccess"),
        ('a<b>:"c"|?*.pdf', "a_b___c____.pdf"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_file_names_are_sanitised(raw: str | None, expected: str) -> None:
    assert sanitise_filename(raw, fallback_stem="TP1", content_type="application/pdf") == expected


def _zip(names: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"%PDF-1.7\n%...", "application/pdf"),
        (b'<?xml version="1.0"?><ToKhai/>', "application/xml"),
        (b"\xef\xbb\xbf<ToKhai/>", "application/xml"),
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (
            _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w/>"}),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        (
            _zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}),
            "application/vnd.oasis.opendocument.text",
        ),
        (_zip({"a.txt": b"hello"}), "application/zip"),
        (b"PK\x03\x04 broken archive", "application/zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 32, "application/x-ole-storage"),
        (b"plain text", "application/octet-stream"),
    ],
)
def test_content_types_are_sniffed_from_the_bytes(data: bytes, kind: str) -> None:
    assert sniff_content_type(data) == kind


@pytest.mark.parametrize(
    ("declared", "sniffed", "error", "stored"),
    [
        (None, "application/pdf", False, "application/pdf"),
        ("application/pdf; charset=binary", "application/pdf", False, "application/pdf"),
        ("text/xml", "application/xml", False, "application/xml"),
        ("application/vnd.dvc.tokhai+xml", "application/xml", False, "application/xml"),
        ("image/jpg", "image/jpeg", False, "image/jpeg"),
        (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/zip",
            False,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        ("application/msword", "application/x-ole-storage", False, "application/msword"),
        ("text/plain", "application/octet-stream", False, "application/octet-stream"),
        ("application/pdf", "image/png", True, None),
        ("application/pdf", "application/octet-stream", True, None),
        ("image/png", "application/xml", True, None),
    ],
)
def test_declared_types_must_agree_with_the_content(declared, sniffed, error, stored) -> None:
    problem, kind = reconcile_content_type(declared, sniffed)
    assert (problem is not None) is error
    if not error:
        assert kind == stored


async def test_names_and_types_are_never_taken_on_trust(gw: Gateway) -> None:
    body = submission(
        components=[
            component("TP1", filename="../../../var/lib/gateway.db"),
            component("TP2", data=PNG, filename="scan.png", content_type=None),
            component("TP3", filename=None),
        ]
    )
    dossier = await gw.submitted(body)
    tp1, tp2, tp3 = dossier["components"]
    assert tp1["filename"] == "gateway.db" and tp1["content_type"] == "application/pdf"
    assert tp2["content_type"] == "image/png"
    assert tp3["filename"] == "TP3.pdf"


async def test_hostile_xml_is_stored_and_reported_never_a_500(gw: Gateway) -> None:
    body = submission(
        components=[
            component("TP1", data=BOMB, filename="tokhai.xml", content_type="application/xml"),
            component("TP2", data=b"<<<not xml at all", filename="x.xml", content_type="text/xml"),
            component("TP3", data=b"\x30\x82\x01\x00 garbage that looks like DER", filename="x.p7m", content_type=None),
        ]
    )
    dossier = await gw.submitted(body)
    tp1, tp2, tp3 = dossier["components"]
    for item in (tp1, tp2):
        assert item["verification"]["verdict"] == "invalid"
        assert item["verification"]["signatures"][0]["sub_indication"] == "FORMAT_FAILURE"
        assert item["originals_check_required"] is True
    assert tp3["verification"]["originals_check_required"] is True
    with gw.db.unit_of_work() as session:
        assert session.get(Blob, tp1["sha256"]).content == BOMB


# ---------------------------------------------------------------------------------------------------------------------
# Signatures


async def test_a_validly_signed_component_needs_no_originals_check(signed_gw: Gateway, pki: Any) -> None:
    signed = await asyncio.to_thread(sign_pdf, pdf("Don de nghi da ky"), pki.good)
    dossier = await signed_gw.submitted(
        submission(components=[component("TP1", data=signed), component("TP2"), component("TP3")])
    )
    tp1, tp2, _ = dossier["components"]
    assert tp1["verification"]["verdict"] == "valid", tp1["verification"]
    assert tp1["verification"]["format"] == "pades"
    assert tp1["originals_check_required"] is False
    assert tp2["verification"]["verdict"] == "unsigned" and tp2["originals_check_required"] is True
    assert dossier["originals_check_required"] is True  # TP2 and TP3 are unsigned
    assert dossier["history"][0]["note"] is None  # TP1 must be signed, and it is


async def test_a_dossier_signed_throughout_is_exempt_from_the_originals_check(signed_gw: Gateway, pki: Any) -> None:
    scan = PNG + b"scan of the land use certificate"
    tp1 = await asyncio.to_thread(sign_pdf, pdf("TP1 signed"), pki.good)
    tp2_signature = await asyncio.to_thread(sign_cms, scan, pki.good)
    tp3 = await asyncio.to_thread(sign_pdf, pdf("TP3 signed"), pki.good_ec)
    components = [
        component("TP1", data=tp1),
        component(
            "TP2",
            data=scan,
            filename="so-do.png",
            content_type="image/png",
            detached_signature_base64=b64(tp2_signature),
        ),
        component("TP3", data=tp3),
    ]
    dossier = await signed_gw.submitted(submission(components=components))
    assert [c["verification"]["verdict"] for c in dossier["components"]] == ["valid"] * 3
    assert dossier["components"][1]["verification"]["format"] == "cades"
    assert dossier["originals_check_required"] is False


async def test_a_must_be_signed_component_with_a_bad_signature_is_kept_and_flagged(
    signed_gw: Gateway, pki: Any
) -> None:
    revoked = await asyncio.to_thread(sign_pdf, pdf("TP1 revoked"), pki.revoked)
    dossier = await signed_gw.submitted(
        submission(components=[component("TP1", data=revoked), component("TP2"), component("TP3")])
    )
    tp1 = dossier["components"][0]
    assert tp1["verification"]["verdict"] == "revoked" and tp1["originals_check_required"] is True
    assert (
        dossier["history"][0]["note"] == "Originals check required: TP1 must be digitally signed (signature: revoked)"
    )


async def test_unsigned_xml_form_is_unsigned(signed_gw: Gateway) -> None:
    form = make_form()
    dossier = await signed_gw.submitted(
        submission(
            components=[
                component("TP1", data=form, filename="tokhai.xml", content_type="application/xml"),
                component("TP2"),
                component("TP3"),
            ]
        )
    )
    assert dossier["components"][0]["verification"]["verdict"] == "unsigned"


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
