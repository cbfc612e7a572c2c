"""Values, wiring and helpers of the national portal flow tests (fixtures: ``tests/national_sync_fixtures.py``)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.national_portal import format_time
from gateway import messages, outbox
from gateway.auth import Principal
from gateway.bus import MessageBus
from gateway.catalogue import import_procedures, parse_catalogue
from gateway.delivery import Deliveries
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import national_code
from gateway.flows.national.reactions import ordering_key, subscriptions
from gateway.flows.national.records import is_local_step
from gateway.flows.national.settings import NationalPortalSettings
from gateway.registry import Registration, register
from gateway.services.context import Context
from gateway.services.events import AgencyEvent, apply_event
from gateway.services.intake import submit
from gateway.settings import load_settings
from gateway.simulators.national_portal import NationalPortalSimulator
from gateway.store.database import Database
from gateway.store.models import Dossier, HistoryEntry, NationalSync, OutboxMessage, utcnow
from gateway.workers import MessageView, OutboxWorker
from signing import TrustStore, Verifier
from tests.documents import make_pdf

AGENCY = "000.00.23.H38"
PROCEDURE = "1.009794"
USERNAME = "lgsp-h38"
PASSWORD = "mat-khau-cong-quoc-gia"
DSTCODE = "H38"
MADONVI = "000.00.00.H38"
AGENCY_PRINCIPAL = Principal("agency", AGENCY)
CATALOGUE = json.dumps(
    [
        {
            "code": PROCEDURE,
            "name": "Cấp giấy phép xây dựng",
            "agencies": [AGENCY, "000.00.10.H38"],
            "processing_days": 15,
            "components": [
                {"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False},
                {"code": "TP2", "name": "Bản vẽ", "required": False, "must_be_signed": False},
            ],
            "fees": [],
        }
    ]
)


# ----------------------------------------------------------------------------------------------------------------------
# The upstream and the gateway


@dataclass
class Gateway:
    """The pieces of a running gateway the flow needs: its context (the bus carries the flow's subscriptions) and
    the ``[national_portal]`` settings (``None``: the integration is off)."""

    ctx: Context
    portal: NationalPortalSettings | None
    config_path: Path

    @property
    def db(self) -> Database:
        return self.ctx.db


def write_config(tmp_path: Path, database_url: str, portal: dict[str, Any] | None) -> Path:
    (tmp_path / "national-password").write_text(PASSWORD, encoding="utf-8")
    lines = [
        "[database]",
        f"url = {json.dumps(database_url)}",
        "[registry]",
        "allow_private_endpoints = true",
    ]
    if portal is not None:
        lines.append("[national_portal]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in portal.items()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def portal_section(base_url: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "username": USERNAME,
        "password": f"file:{tmp_path / 'national-password'}",
        "dstcode": DSTCODE,
        "madonvi": MADONVI,
        "timeout_seconds": 10,
        **overrides,
    }


def open_gateway(tmp_path: Path, database_url: str, portal: dict[str, Any] | None) -> Gateway:
    """A migrated database with the test catalogue and the agency registered, and the flow's pieces over it."""
    path = write_config(tmp_path, database_url, portal)
    settings = load_settings(path, environ={})
    trust = settings.signing.trust_settings()
    db = Database.connect(database_url)
    db.upgrade()
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(CATALOGUE))
        register(session, Registration.model_validate(AGENCY_DOCUMENT))
    verifier = Verifier(TrustStore.load(trust), settings=trust)
    bus = MessageBus(subscriptions(settings.national_portal is not None))
    ctx = Context(db=db, bus=bus, calendar=OfficeCalendar(), verifier=verifier)
    return Gateway(ctx=ctx, portal=settings.national_portal, config_path=path)


#: The agency the dossiers go to (its deliveries are accepted without calling it).
AGENCY_DOCUMENT = {
    "code": AGENCY,
    "name": "Sở Xây dựng",
    "protocol": "rest",
    "endpoint": "http://127.0.0.1:9",
    "procedures": [PROCEDURE],
    "auth": {"type": "bearer", "token": "env:AGENCY_TOKEN_NOT_USED"},
}


def close_gateway(gw: Gateway) -> None:
    gw.ctx.verifier.close()
    gw.db.dispose()


class AgencyAccepted:
    """Takes the agencies' messages as delivered: the dossiers' deliveries to their agency are not tested here."""

    kinds = messages.AGENCY_KINDS

    async def handle(self, message: MessageView) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Delivery:
    gw: Gateway
    dispatcher: Deliveries
    worker: OutboxWorker

    async def drain(self, rounds_limit: int = 2000) -> None:
        """Run the worker until no message is left to deliver; a dead one fails the test at once."""
        with anyio.fail_after(60):
            for _ in range(rounds_limit):
                await self.worker.run_once()
                left = unfinished(self.gw)
                dead = [m for m in left if m[2] == outbox.DEAD]
                assert not dead, f"dead messages: {dead}"
                if not left:
                    return
                await asyncio.sleep(0.01)
        raise AssertionError(f"messages left: {unfinished(self.gw)}")

    async def rounds(self, count: int) -> None:
        """Run the worker ``count`` times (deliveries may fail and be retried)."""
        with anyio.fail_after(60):
            for _ in range(count):
                await self.worker.run_once()
                await asyncio.sleep(0.02)


def unfinished(gw: Gateway) -> list[tuple[int, str, str, str | None]]:
    with gw.db.unit_of_work() as session:
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.state.in_((outbox.PENDING, outbox.IN_FLIGHT, outbox.DEAD)))
        )
        return [(m.id, m.kind, m.state, m.last_error) for m in rows]


# ----------------------------------------------------------------------------------------------------------------------
# Dossiers


def code_only(session: Session, dossier: Dossier, now: datetime, /, *, created: bool = False) -> dict[str, Any]:
    return {"code": dossier.code}


async def submit_dossier(gw: Gateway, *, channel: str = "online", return_method: str | None = None) -> str:
    document: dict[str, Any] = {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "channel": channel,
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
        "summary": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "components": [
            {"code": "TP1", "filename": "don.pdf", "content_base64": base64.b64encode(make_pdf("Don")).decode()}
        ],
    }
    if return_method:
        document["return_method"] = return_method
        document["delivery_address"] = {"line": "12 Phố Huế", "province": "Hà Nội"}
    answer = await submit(gw.ctx, Principal("portal"), document, idempotency_key=None, now=utcnow(), render=code_only)
    assert answer.status == 201, answer.body
    return answer.body["code"]


async def event(gw: Gateway, code: str, status: str, **fields: Any) -> None:
    body = AgencyEvent.model_validate({"dossier_code": code, "status": status, **fields})
    await apply_event(gw.ctx, AGENCY_PRINCIPAL, body, now=utcnow())


def history(gw: Gateway, code: str, *, everything: bool = False) -> list[HistoryEntry]:
    """The dossier's history; without ``everything``, the entries the portal hears of (skipped integrations,
    recorded by any flow when its integration is off, are the gateway's own business)."""
    with gw.db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == code)).one()
        return [entry for entry in dossier.history if everything or not is_local_step(entry)]


def sync_row(gw: Gateway, code: str) -> NationalSync | None:
    with gw.db.unit_of_work() as session:
        return session.get(NationalSync, code)


def sync_messages(gw: Gateway, code: str) -> list[OutboxMessage]:
    with gw.db.unit_of_work() as session:
        statement = (
            select(OutboxMessage)
            .where(
                OutboxMessage.kind == messages.NATIONAL_SYNC,
                OutboxMessage.ordering_key == ordering_key(code),
            )
            .order_by(OutboxMessage.id)
        )
        return list(session.scalars(statement))


def portal_calls(sim: NationalPortalSimulator, service: str) -> list[dict[str, Any]]:
    return [call for call in sim.calls if call["service"] == service]


def progress_of(sim: NationalPortalSimulator, code: str) -> list[tuple[str, int]]:
    return [(step["ThoiDiemXuLy"], step["TrangThai"]) for step in sim.dossiers[code]["progress"]]


def expected_progress(gw: Gateway, code: str) -> list[tuple[str, int]]:
    return [(format_time(entry.at), national_code(entry.status)) for entry in history(gw, code)]
