"""The operators' console and the citizens' lookup page, over HTTP (the browser tests drive them in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from gateway import messages, outbox
from gateway.store.models import AuditEntry, OutboxMessage
from tests.api_support import (
    ADMIN_TOKEN,
    AGENCY,
    PERSONAL_STRINGS,
    PORTAL_TOKEN,
    Gateway,
    gateway_client,
    open_runtime,
)
from tests.test_watch import _at

pytest_plugins = ("tests.api_fixtures",)

_CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(html: str) -> str:
    match = _CSRF_RE.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def _login(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    form = await client.get("/console/login")
    return await client.post("/console/login", data={"token": token, "csrf": _csrf(form.text)})


def _dead_letter(gw: Gateway, dossier_code: str = "000.00.23.H38-261123-0001") -> int:
    with gw.db.unit_of_work() as session:
        message = outbox.enqueue(
            session,
            kind=messages.ALERT_WEBHOOK,
            target=messages.ALERTS_TARGET,
            payload={"dossier_code": dossier_code, "condition": "overdue"},
            idempotency_key=f"{dossier_code}:alert:overdue",
        )
        message.state, message.attempts, message.last_error = outbox.DEAD, 8, "PermanentError: HTTP 400"
        session.flush()
        return message.id


async def test_pages_need_a_session_and_login_sets_a_strict_cookie(gw: Gateway) -> None:
    response = await gw.client.get("/console/")
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert (await gw.client.get("/console")).headers["location"].endswith("/console/")
    login = await _login(gw.client)
    assert login.status_code == 303 and login.headers["location"] == "/console/"
    cookie = next(v for k, v in login.headers.multi_items() if k == "set-cookie" and v.startswith("dvc_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert ADMIN_TOKEN not in cookie
    page = await gw.client.get("/console/")
    assert page.status_code == 200 and AGENCY in page.text and "Luồng hồ sơ" in page.text
    assert "<script" not in page.text and "default-src 'none'" in page.headers["content-security-policy"]


async def test_only_admin_tokens_log_in_and_forms_need_their_csrf_token(gw: Gateway) -> None:
    refused = await _login(gw.client, PORTAL_TOKEN)
    assert refused.status_code == 401 and "không phải mã quản trị" in refused.text
    assert (await gw.client.get("/console/")).status_code == 303
    forged = await gw.client.post("/console/login", data={"token": ADMIN_TOKEN, "csrf": "forged"})
    assert forged.status_code == 403
    await _login(gw.client)
    message_id = _dead_letter(gw)
    no_csrf = await gw.client.post("/console/outbox/redrive", data={"ids": str(message_id)})
    assert no_csrf.status_code == 403
    with gw.db.unit_of_work() as session:
        assert session.get(OutboxMessage, message_id).state == outbox.DEAD
    page = await gw.client.get("/console/")
    logout = await gw.client.post("/console/logout", data={"csrf": _csrf(page.text)})
    assert logout.status_code == 303
    assert (await gw.client.get("/console/outbox")).status_code == 303


async def test_redrive_one_dead_letter_from_the_outbox_page(gw: Gateway) -> None:
    await _login(gw.client)
    first, second = _dead_letter(gw), _dead_letter(gw, "000.00.23.H38-261123-0002")
    page = await gw.client.get("/console/outbox?state=dead")
    assert f'id="message-{first}" data-state="dead"' in page.text and "PermanentError: HTTP 400" in page.text
    response = await gw.client.post("/console/outbox/redrive", data={"csrf": _csrf(page.text), "ids": str(first)})
    assert response.status_code == 303 and response.headers["location"].endswith("redriven=1")
    with gw.db.unit_of_work() as session:
        assert session.get(OutboxMessage, first).state == outbox.PENDING
        assert session.get(OutboxMessage, second).state == outbox.DEAD
        [entry] = [e for e in session.query(AuditEntry) if e.action == "outbox.redrive"]
        assert entry.subject == str(first) and entry.details["via"] == "console"
    everything = await gw.client.post("/console/outbox/redrive", data={"csrf": _csrf(page.text), "all": "1"})
    assert everything.headers["location"].endswith("redriven=1")


async def test_watch_agencies_and_reports_pages(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    gw.clock.set(_at(24, 8))
    await _login(gw.client)
    watch = await gw.client.get("/console/watch")
    assert code in watch.text and "Quá hạn tiếp nhận" in watch.text and 'data-condition="unacknowledged"' in watch.text
    agencies = await gw.client.get("/console/agencies")
    assert AGENCY in agencies.text and "Bình thường" in agencies.text
    await gw.event(code, "received")
    reports = await gw.client.get("/console/reports?period=2026-11")
    assert reports.status_code == 200 and "<svg" in reports.text and "· 2026-11</h2>" in reports.text
    assert "<title>Tiếp nhận: 1</title>" in reports.text and "Tiếp nhận trực tuyến" in reports.text
    quarter = await gw.client.get("/console/reports?period=2026-Q4")
    assert "<title>Tiếp nhận: 1</title>" in quarter.text
    assert "<title>Tiếp nhận: 1</title>" not in (await gw.client.get("/console/reports?period=2026-10")).text
    workbook = await gw.client.get("/console/reports/file?period=2026-11&format=xlsx")
    assert workbook.status_code == 200 and workbook.content[:2] == b"PK"
    assert 'filename="bao-cao-2026-11.xlsx"' in workbook.headers["content-disposition"]
    flow = await gw.client.get("/console/")
    assert "Đã nộp, chờ tiếp nhận" in flow.text
    for text in PERSONAL_STRINGS:
        assert text not in watch.text + flow.text


async def test_the_lookup_page_shows_status_and_dates_never_personal_data(gw: Gateway) -> None:
    code = (await gw.submitted())["code"]
    await gw.event(code, "received")
    page = await gw.client.get("/lookup", params={"code": code})
    assert page.status_code == 200
    assert "Đã tiếp nhận" in page.text and "Hạn trả kết quả" in page.text and "23/11/2026" in page.text
    assert "<script" not in page.text
    for text in PERSONAL_STRINGS:
        assert text not in page.text
    assert (await gw.client.get("/lookup", params={"code": "000.00.23.H38-261123-9999"})).status_code == 404
    assert (await gw.client.get("/lookup", params={"code": "<b>x</b>"})).status_code == 404
    assert (await gw.client.get("/lookup")).status_code == 200


async def test_the_lookup_page_is_rate_limited_per_client(tmp_path: Path) -> None:
    with open_runtime("sqlite", tmp_path, console={"lookup_per_minute": 3}) as runtime:
        async for gw in gateway_client(runtime):
            code = (await gw.submitted())["code"]
            answers = [(await gw.client.get("/lookup", params={"code": code})).status_code for _ in range(4)]
            assert answers == [200, 200, 200, 429]
            limited = await gw.client.get("/lookup", params={"code": code})
            assert limited.headers["retry-after"] == "60" and "quá nhiều lần" in limited.text
