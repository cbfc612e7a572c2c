"""The HTTP layer: health and readiness, metrics, body limits, content types, the error shape, access logs, request
ids, the OpenAPI description and the signature verification endpoint."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text as sql

from gateway.api import create_app
from gateway.runtime import Runtime
from gateway.store.database import Database
from tests.api_support import (
    ADMIN,
    AGENCY_AUTH,
    APPLICANT,
    PERSONAL_STRINGS,
    PORTAL,
    Clock,
    Gateway,
    b64,
    gateway_client,
    open_runtime,
    pdf,
    settings_for,
    submission,
)
from tests.documents import sign_cms, sign_pdf

pytest_plugins = ("tests.api_fixtures",)  # the gw, any_gw and signed_gw fixtures


async def client_for(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime, clock=Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as client:
        yield client


# ---------------------------------------------------------------------------------------------------------------------
# Health and readiness


async def test_healthz_and_readyz(gw: Gateway) -> None:
    health = await gw.client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await gw.client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": "sqlite"}


async def test_readiness_reads_the_migration_scripts_once_per_process(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes come every few seconds: the newest revision is read from the scripts once, not at every probe."""
    from gateway.store import engine

    assert (await gw.client.get("/readyz")).status_code == 200

    def unreadable() -> None:
        raise AssertionError("the migration scripts were read again")

    monkeypatch.setattr(engine, "_scripts", unreadable)
    for _ in range(3):
        assert (await gw.client.get("/readyz")).status_code == 200


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    runtime = Runtime(settings=settings_for(url, tmp_path), db=Database.connect(url))
    try:
        async for client in client_for(runtime):
            assert (await client.get("/healthz")).status_code == 200
            response = await client.get("/readyz")
            assert response.status_code == 503
            error = response.json()["error"]
            assert error["code"] == "not_ready" and "unreachable" in error["message"]
            # A request needing the database is refused cleanly, to be retried later, without internals.
            lookup = await client.get("/api/v1/lookup/000.00.23.H38-261123-0001")
            assert lookup.status_code == 503 and lookup.headers["Retry-After"] == "5"
            assert lookup.json()["error"]["code"] == "database_unavailable"
            assert "psycopg" not in lookup.text and "127.0.0.1" not in lookup.text
    finally:
        runtime.close()


async def test_readyz_is_503_when_migrations_are_not_applied(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    runtime = Runtime(settings=settings_for(url, tmp_path), db=Database.connect(url))
    try:
        async for client in client_for(runtime):
            response = await client.get("/readyz")
            assert response.status_code == 503 and "migration" in response.json()["error"]["message"]
            runtime.db.upgrade()
            assert (await client.get("/readyz")).status_code == 200
            runtime.db.engine.dispose()
            (tmp_path / "empty.db").unlink()
            (tmp_path / "empty.db").mkdir()  # the file is gone and cannot come back: the database is broken
            assert (await client.get("/readyz")).status_code == 503
    finally:
        runtime.close()


# ---------------------------------------------------------------------------------------------------------------------
# Bodies


class CountingBody:
    """A request body streamed in chunks, counting how many were read."""

    def __init__(self, chunks: int, size: int = 64 * 1024) -> None:
        self.chunks = chunks
        self.size = size
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b" " * self.size


async def test_a_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, server={"max_body_bytes": 1_000_000}) as runtime:
        async for gw in gateway_client(runtime):
            declared = CountingBody(chunks=64)  # 4 MiB, with its Content-Length
            headers = {**PORTAL, "Content-Type": "application/json", "Content-Length": str(64 * 64 * 1024)}
            response = await gw.client.post("/api/v1/dossiers", content=declared, headers=headers)
            assert response.status_code == 413
            assert response.json()["error"]["code"] == "payload_too_large"
            assert declared.read == 0

            streamed = CountingBody(chunks=64)  # chunked: no Content-Length
            headers = {**PORTAL, "Content-Type": "application/json"}
            response = await gw.client.post("/api/v1/dossiers", content=streamed, headers=headers)
            assert response.status_code == 413
            assert streamed.read <= 1_000_000 // (64 * 1024) + 2  # stopped just past the limit

            small = await gw.client.post("/api/v1/dossiers", json=submission(), headers=PORTAL)
            assert small.status_code == 201


async def test_malformed_json_is_400(gw: Gateway) -> None:
    headers = {**PORTAL, "Content-Type": "application/json"}
    for body in (
        b'{"procedure_code": ',
        b"{'single': 'quotes'}",
        b"",
        b'{"a": NaN}',
        b'{"a": 1, "a": 2}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe\x00garbage",
    ):
        response = await gw.client.post("/api/v1/dossiers", content=body, headers=headers)
        assert response.status_code == 400, body[:20]
        assert response.json()["error"]["code"] == "malformed_request"


async def test_what_no_database_can_store_is_refused_and_changes_nothing(any_gw: Gateway) -> None:
    """JSON that the standard library reads but that could not be answered or stored: a number beyond a float's range
    (read as infinity: 400, not a JSON number), U+0000 (PostgreSQL's text cannot hold it) and half a surrogate pair
    (UTF-8 cannot encode it), in a field of the model or an extra one (422, with the field); and U+0000 in the
    address (404 in the path, 422 in the query). No dossier, outbox message or audit entry is written."""

    def counts(session: Any) -> tuple[int, ...]:
        return tuple(session.scalar(sql(f"SELECT count(*) FROM {table}")) for table in ("dossiers", "outbox", "audit"))

    before = await any_gw.db.run(counts)
    good = json.dumps(submission())[:-1]
    headers = {**PORTAL, "Content-Type": "application/json"}
    for body, status, field, message in (
        (good + ', "ghi_chu": 1e999}', 400, None, "the number 1e999 is out of range"),
        (good + ', "so_luong": [1, -2.5e400]}', 400, None, "the number -2.5e400 is out of range"),
        (good.replace('"summary": "', '"summary": "a\\u0000b') + "}", 422, "summary", "U+0000"),
        (good + ', "ghi_chu": {"x\\u0000": 1}}', 422, "ghi_chu.x\\x00", "its name holds the character U+0000"),
        (good + ', "ghi_chu": ["ok", "a\\ud800b"]}', 422, "ghi_chu[1]", "half of a UTF-16 surrogate pair"),
    ):
        assert json.loads(body)  # JSON the standard library reads
        response = await any_gw.client.post("/api/v1/dossiers", content=body.encode(), headers=headers)
        assert response.status_code == status, body[-40:]
        error = response.json()["error"]
        assert message in error["message"]
        if field is None:
            assert error["code"] == "malformed_request"
        else:
            assert error["code"] == "validation_failed" and [d["field"] for d in error["details"]] == [field]
    for path in ("/api/v1/dossiers/a%00b", "/api/v1/lookup/a%00b"):
        response = await any_gw.client.get(path, headers=PORTAL)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    response = await any_gw.client.get("/api/v1/admin/outbox?state=%00", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "query", "message": "holds the character U+0000, which cannot be stored"}
    ]
    assert await any_gw.db.run(counts) == before
    assert (await any_gw.submit()).status_code == 201  # and the gateway still takes a dossier in


async def test_json_endpoints_need_a_json_content_type(gw: Gateway) -> None:
    body = json.dumps(submission()).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml", None):
        headers = dict(PORTAL)
        if content_type:
            headers["Content-Type"] = content_type
        response = await gw.client.post("/api/v1/dossiers", content=body, headers=headers)
        assert response.status_code == 415, content_type
        assert response.json()["error"]["code"] == "unsupported_media_type"
    ok = await gw.client.post(
        "/api/v1/dossiers", content=body, headers={**PORTAL, "Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 201


async def test_authentication_comes_before_the_body(gw: Gateway) -> None:
    response = await gw.client.post("/api/v1/dossiers", content=b"{", headers={"Content-Type": "text/plain"})
    assert response.status_code == 401


# ---------------------------------------------------------------------------------------------------------------------
# The error shape


async def test_unknown_routes_and_methods_use_the_error_shape(gw: Gateway) -> None:
    missing = await gw.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message", "details"}
    wrong = await gw.client.delete("/healthz")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


async def test_an_unexpected_error_is_a_bare_500(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:

    code = (await gw.submitted())["code"]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"secret internals: {APPLICANT['full_name']} at /var/lib/gateway")

    monkeypatch.setattr("gateway.api.routes_public.lookup_view", explode)
    response = await gw.client.get(f"/api/v1/lookup/{code}", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "internal_error" and "req-42" in error["message"]
    assert "secret" not in response.text and "Traceback" not in response.text and "/var/lib" not in response.text
    assert "RuntimeError" in caplog.text  # the log says what happened and where...
    assert APPLICANT["full_name"] not in caplog.text  # ...never what the exception's message quoted


async def test_request_validation_errors_use_the_error_shape(gw: Gateway) -> None:
    response = await gw.client.get("/api/v1/admin/outbox?limit=0", headers=ADMIN)
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "limit"


# ---------------------------------------------------------------------------------------------------------------------
# Access log, request ids, metrics


async def test_one_json_access_log_line_per_request(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    body = await gw.submitted()
    code = body["code"]
    caplog.clear()
    response = await gw.client.get(
        f"/api/v1/lookup/{code}?name={APPLICANT['phone']}", headers={"X-Request-ID": "abc-1"}
    )
    assert response.headers["x-request-id"] == "abc-1"
    [record] = [r for r in caplog.records if r.name == "gateway.access"]
    line = json.loads(record.getMessage())
    assert line["method"] == "GET" and line["route"] == "/api/v1/lookup/{code}" and line["status"] == 200
    assert line["request_id"] == "abc-1" and isinstance(line["duration_ms"], float)
    assert APPLICANT["phone"] not in record.getMessage()
    caplog.clear()
    await gw.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    line = json.loads(caplog.records[-1].getMessage())
    assert line["request_id"] != "bad id with spaces" and len(line["request_id"]) == 32
    caplog.clear()
    await gw.client.post("/api/v1/dossiers", json=submission(), headers=PORTAL)
    line = json.loads(caplog.records[-1].getMessage())
    assert line["route"] == "/api/v1/dossiers" and line["status"] == 201 and line["role"] == "portal"
    for text in PERSONAL_STRINGS:
        assert text not in caplog.text


async def test_metrics_need_the_admin_token(gw: Gateway) -> None:
    await gw.submitted()
    assert (await gw.client.get("/metrics")).status_code == 401
    assert (await gw.client.get("/metrics", headers=PORTAL)).status_code == 403
    response = await gw.client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'dvc_gateway_http_requests_total{method="POST",route="/api/v1/dossiers",status="201"} 1.0' in text
    assert 'dvc_gateway_dossiers_submitted_total{agency="000.00.23.H38"} 1.0' in text
    assert 'dvc_gateway_outbox_messages{state="pending"} 1.0' in text
    assert 'dvc_gateway_outbox_messages{state="dead"} 0.0' in text


async def test_metrics_can_be_public(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, server={"public_metrics": True}) as runtime:
        async for gw in gateway_client(runtime):
            assert (await gw.client.get("/metrics")).status_code == 200


# ---------------------------------------------------------------------------------------------------------------------
# OpenAPI


async def test_openapi_documents_the_idempotency_key_where_it_is_honoured(gw: Gateway) -> None:
    """The portal's changes take an ``Idempotency-Key`` header: the description says so, with the path's parameters
    first, and a repeat with the key answers the first answer."""
    document = (await gw.client.get("/openapi.json")).json()
    described = {
        (path, method): [(p["name"], p["in"], p["required"]) for p in operation.get("parameters", [])]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    key = ("Idempotency-Key", "header", False)
    assert described == {
        ("/api/v1/dossiers", "post"): [key],
        ("/api/v1/dossiers/{code}/supplements", "post"): [("code", "path", True), key],
        ("/api/v1/dossiers/{code}/withdraw", "post"): [("code", "path", True), key],
    }
    first = await gw.submit(key="documented-key")
    again = await gw.submit(key="documented-key")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["code"] == first.json()["code"]
    code = first.json()["code"]
    withdrawals = [
        await gw.client.post(
            f"/api/v1/dossiers/{code}/withdraw",
            json={"reason": "Nộp nhầm hồ sơ"},
            headers={**PORTAL, "Idempotency-Key": "withdraw-key"},
        )
        for _ in range(2)
    ]
    assert [w.status_code for w in withdrawals] == [200, 200], withdrawals[0].text
    assert withdrawals[1].headers["Idempotent-Replayed"] == "true"


async def test_openapi_lists_every_route(gw: Gateway) -> None:
    response = await gw.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    from gateway.api import (
        routes_admin,
        routes_agencies,
        routes_citizens,
        routes_dossiers,
        routes_ops,
        routes_payments,
        routes_postal,
        routes_public,
        routes_reports,
        routes_signatures,
        routes_sms,
    )

    modules = (
        routes_admin,
        routes_agencies,
        routes_citizens,
        routes_dossiers,
        routes_ops,
        routes_payments,
        routes_postal,
        routes_public,
        routes_reports,
        routes_signatures,
        routes_sms,
    )
    served = {
        (route.path, method.lower())
        for module in modules
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == described
    expected = {
        ("/api/v1/dossiers", "post"),
        ("/api/v1/dossiers/{code}", "get"),
        ("/api/v1/dossiers/{code}/supplements", "post"),
        ("/api/v1/dossiers/{code}/withdraw", "post"),
        ("/api/v1/lookup/{code}", "get"),
        ("/api/v1/agencies/{agency}/events", "post"),
        ("/api/v1/signatures/verify", "post"),
        ("/api/v1/admin/agencies", "get"),
        ("/api/v1/admin/agencies", "post"),
        ("/api/v1/admin/agencies/{code}", "get"),
        ("/api/v1/admin/agencies/{code}", "put"),
        ("/api/v1/admin/agencies/{code}", "delete"),
        ("/api/v1/admin/outbox", "get"),
        ("/api/v1/admin/outbox/{message_id}/redrive", "post"),
        ("/api/v1/payments/notify", "get"),
        ("/api/v1/payments/notify", "post"),
        ("/api/v1/payments/notify/national", "post"),
        ("/api/v1/postal/events", "post"),
        ("/api/v1/sms/inbound", "post"),
        ("/api/v1/dossiers/{code}/ratings", "post"),
        ("/api/v1/questions", "post"),
        ("/api/v1/questions/{question_id}", "get"),
        ("/api/v1/agencies/{agency}/questions", "get"),
        ("/api/v1/agencies/{agency}/questions/{question_id}/answer", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    assert expected <= described
    schemas = document["components"]["schemas"]
    assert {"Submission", "AgencyEvent", "Registration", "VerifyRequest"} <= set(schemas)
    body = document["paths"]["/api/v1/dossiers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Submission"}
    for schema in schemas.values():  # every reference resolves
        for ref in _refs(schema):
            assert ref.removeprefix("#/components/schemas/") in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


# ---------------------------------------------------------------------------------------------------------------------
# Signature verification


async def test_verify_a_signed_pdf_as_json_and_as_an_upload(signed_gw: Gateway, pki: Any) -> None:
    signed = await asyncio.to_thread(sign_pdf, pdf("Van ban da ky"), pki.good)
    response = await signed_gw.client.post(
        "/api/v1/signatures/verify",
        json={"filename": "../van-ban.pdf", "content_base64": b64(signed)},
        headers=PORTAL,
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["file"] == "van-ban.pdf" and report["verdict"] == "valid" and report["format"] == "pades"
    assert report["originals_check_required"] is False

    upload = await signed_gw.client.post(
        "/api/v1/signatures/verify", files={"file": ("van-ban.pdf", signed, "application/pdf")}, headers=PORTAL
    )
    assert upload.status_code == 200 and upload.json()["verdict"] == "valid"

    scan = b"\x89PNG\r\n\x1a\n scanned page"
    signature = await asyncio.to_thread(sign_cms, scan, pki.good)
    detached = await signed_gw.client.post(
        "/api/v1/signatures/verify",
        files={"file": ("scan.png", scan, "image/png"), "signature": ("scan.png.p7s", signature, "application/pkcs7")},
        headers=PORTAL,
    )
    assert detached.status_code == 200 and detached.json()["format"] == "cades"
    assert detached.json()["verdict"] == "valid"


async def test_verify_refusals(gw: Gateway) -> None:
    url = "/api/v1/signatures/verify"
    unsigned = await gw.client.post(url, json={"content_base64": b64(b"hello")}, headers=PORTAL)
    assert unsigned.status_code == 200 and unsigned.json()["verdict"] == "unsigned"
    assert (await gw.client.post(url, json={"content_base64": "**"}, headers=PORTAL)).status_code == 422
    assert (await gw.client.post(url, json={"content_base64": ""}, headers=PORTAL)).status_code == 422
    assert (await gw.client.post(url, json={}, headers=PORTAL)).status_code == 422
    assert (
        await gw.client.post(url, content=b"x", headers={**PORTAL, "Content-Type": "text/plain"})
    ).status_code == 415
    assert (await gw.client.post(url, files={"other": ("a", b"x")}, headers=PORTAL)).status_code == 422
    assert (await gw.client.post(url, json={"content_base64": b64(b"x")}, headers=AGENCY_AUTH)).status_code == 403
    assert (await gw.client.post(url, json={"content_base64": b64(b"x")})).status_code == 401


async def test_verify_garbage_is_a_report_not_an_error(gw: Gateway) -> None:
    for data in (b"%PDF-1.7 garbage", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"):
        response = await gw.client.post("/api/v1/signatures/verify", json={"content_base64": b64(data)}, headers=PORTAL)
        assert response.status_code == 200
        assert response.json()["verdict"] == "invalid"
        assert response.json()["signatures"][0]["sub_indication"] == "FORMAT_FAILURE"


async def test_verify_oversized_upload_is_413(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, server={"max_file_bytes": 1000}) as runtime:
        async for gw in gateway_client(runtime):
            big = b"%PDF-1.7" + b"0" * 2000
            response = await gw.client.post(
                "/api/v1/signatures/verify", files={"file": ("big.pdf", big, "application/pdf")}, headers=PORTAL
            )
            assert response.status_code == 413
            response = await gw.client.post(
                "/api/v1/signatures/verify", json={"content_base64": b64(big)}, headers=PORTAL
            )
            assert response.status_code == 413
