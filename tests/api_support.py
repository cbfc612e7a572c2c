"""A gateway for API tests: a migrated database, the example catalogue (plus an inter-agency procedure), registered
agencies, configured tokens, a frozen clock and an ``httpx.AsyncClient`` on the ASGI app.

The fixtures (``gw``, ``any_gw``, ``signed_gw``) are in :mod:`tests.api_fixtures`, loaded with ``pytest_plugins``.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from gateway.api import create_app
from gateway.catalogue import import_procedures, load_catalogue, parse_catalogue
from gateway.domain.calendar import VIETNAM_TZ
from gateway.registry import RegistrySettings, register, validate_registration
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.store.database import Database
from tests.databases import postgres_schema_url
from tests.documents import make_pdf

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "procedures.json"

AGENCY = "000.00.23.H38"  # Sở Xây dựng: procedure 1.009794 (and the inter-agency one)
AGENCY2 = "000.00.24.H38"  # a second agency of the inter-agency procedure
AGENCY3 = "000.00.10.H38"  # Sở Kế hoạch và Đầu tư: procedure 2.001610
UNREGISTERED = "H38.12.05"  # competent for 1.001193 but not registered
PROCEDURE = "1.009794"
JOINT = "9.000001"  # an inter-agency (liên thông) procedure handled by AGENCY then AGENCY2

PORTAL_TOKEN = "portal-token-0123456789abcdef"
AGENCY_TOKEN = "agency-token-0123456789abcdef"
AGENCY2_TOKEN = "agency2-token-0123456789abcdef"
AGENCY3_TOKEN = "agency3-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"

#: Monday 23 November 2026, 09:00 in Hà Nội: inside the morning session of a working day.
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=VIETNAM_TZ)

JOINT_PROCEDURE = f"""[{{"code": "{JOINT}", "name": "Thủ tục liên thông thử nghiệm",
  "agencies": ["{AGENCY}", "{AGENCY2}"], "processing_days": 10,
  "components": [{{"code": "TP1", "name": "Tờ khai", "required": true, "must_be_signed": false}}],
  "fees": []}}]"""

#: Personal data of the sample applicant: must never appear in public answers or logs.
APPLICANT = {
    "kind": "citizen",
    "full_name": "Nguyễn Thị Hồng Nhung",
    "id_number": "001199054321",
    "phone": "0987654321",
    "email": "nhung@example.vn",
    "address": "12 Phố Huế, phường Hàng Bài, quận Hoàn Kiếm, Hà Nội",
}
PERSONAL_STRINGS = [APPLICANT[key] for key in ("full_name", "id_number", "phone", "address", "email")]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


PORTAL = auth(PORTAL_TOKEN)
AGENCY_AUTH = auth(AGENCY_TOKEN)
AGENCY2_AUTH = auth(AGENCY2_TOKEN)
AGENCY3_AUTH = auth(AGENCY3_TOKEN)
ADMIN = auth(ADMIN_TOKEN)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_PDFS: dict[str, bytes] = {}


def pdf(text: str) -> bytes:
    if text not in _PDFS:
        _PDFS[text] = make_pdf(text)
    return _PDFS[text]


def component(code: str, data: bytes | None = None, **fields: Any) -> dict[str, Any]:
    data = data if data is not None else pdf(f"Thanh phan {code}")
    item = {
        "code": code,
        "name": f"Thành phần {code}",
        "filename": f"{code.lower()}.pdf",
        "content_type": "application/pdf",
        "content_base64": b64(data),
        "detached_signature_base64": None,
    }
    item.update(fields)
    return item


def submission(**overrides: Any) -> dict[str, Any]:
    """A valid submission of procedure 1.009794 to AGENCY (three PDF components, the one fee)."""
    body: dict[str, Any] = {
        "procedure_code": PROCEDURE,
        "agency_code": AGENCY,
        "channel": "online",
        "applicant": copy.deepcopy(APPLICANT),
        "summary": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
        "components": [component("TP1"), component("TP2"), component("TP3")],
        "fees": [{"code": "LP1", "name": "Lệ phí cấp giấy phép xây dựng", "amount": 150000}],
        "return_method": "post",
        "delivery_address": {"line": APPLICANT["address"], "province": "Hà Nội"},
    }
    body.update(overrides)
    return body


def joint_submission(**overrides: Any) -> dict[str, Any]:
    body = submission(procedure_code=JOINT, components=[component("TP1")], fees=None)
    body.update(overrides)
    return body


class Clock:
    """A frozen, movable clock."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, value: datetime) -> datetime:
        self.now = value
        return value


def registration(code: str, procedures: list[str]) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"Cơ quan {code}",
        "protocol": "rest",
        "endpoint": f"http://127.0.0.1:9/{code}/api",
        "procedures": procedures,
        "auth": {"type": "none"},
        "status_updates": {"mode": "callback"},
    }


def settings_for(db_url: str, tmp_path: Path, *, signing: dict[str, Any] | None = None, **sections: Any) -> Settings:
    """The API tests' settings on ``db_url``: private endpoints allowed, the test tokens, ``signing`` and ``sections``
    added; relative paths start from ``tmp_path``."""
    raw: dict[str, Any] = {
        "database": {"url": db_url},
        "registry": {"allow_private_endpoints": True},
        "auth": {
            "tokens": [
                {"token": PORTAL_TOKEN, "role": "portal"},
                {"token": AGENCY_TOKEN, "role": f"agency:{AGENCY}"},
                {"token": AGENCY2_TOKEN, "role": f"agency:{AGENCY2}"},
                {"token": AGENCY3_TOKEN, "role": f"agency:{AGENCY3}"},
                {"token": ADMIN_TOKEN, "role": "admin"},
            ]
        },
    }
    if signing is not None:
        raw["signing"] = signing
    for name, section in sections.items():
        raw.setdefault(name, {}).update(section)
    return Settings.from_raw(raw, tmp_path)


def prepare_database(db: Database) -> None:
    """Migrate, import the catalogue, register AGENCY, AGENCY2 and AGENCY3."""
    db.upgrade()
    specs = load_catalogue(EXAMPLES) + parse_catalogue(JOINT_PROCEDURE, fmt="json")
    settings = RegistrySettings(allow_private_endpoints=True)
    with db.unit_of_work() as session:
        import_procedures(session, specs)
        known = {spec.code for spec in specs}
        for code, procedures in ((AGENCY, [PROCEDURE, JOINT]), (AGENCY2, [JOINT]), (AGENCY3, ["2.001610"])):
            register(
                session,
                validate_registration(registration(code, procedures), settings=settings, known_procedures=known),
            )


@dataclass
class Gateway:
    runtime: Runtime
    clock: Clock
    client: httpx.AsyncClient
    app: Any = field(repr=False, default=None)

    @property
    def db(self) -> Database:
        return self.runtime.db

    async def submit(self, body: dict[str, Any] | None = None, *, key: str | None = None) -> httpx.Response:
        headers = dict(PORTAL)
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.client.post("/api/v1/dossiers", json=body or submission(), headers=headers)

    async def submitted(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.submit(body)
        assert response.status_code == 201, response.text
        return response.json()

    async def event(
        self, code: str, status: str, *, token: dict[str, str] = AGENCY_AUTH, agency: str = AGENCY, **fields: Any
    ) -> httpx.Response:
        body = {"dossier_code": code, "status": status, **fields}
        if "at" not in body:
            body["at"] = self.clock.now.isoformat()
        return await self.client.post(f"/api/v1/agencies/{agency}/events", json=body, headers=token)

    async def get(self, code: str, headers: dict[str, str] = PORTAL) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/dossiers/{code}", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/gateway.db"
        return
    with postgres_schema_url() as url:
        yield url


@contextmanager
def open_runtime(
    kind: str, tmp_path: Path, *, signing: dict[str, Any] | None = None, **sections: Any
) -> Iterator[Runtime]:
    with database_url(kind, tmp_path) as url:
        runtime = Runtime(settings=settings_for(url, tmp_path, signing=signing, **sections), db=Database.connect(url))
        try:
            prepare_database(runtime.db)
            yield runtime
        finally:
            runtime.close()


async def gateway_client(runtime: Runtime) -> AsyncIterator[Gateway]:
    clock = Clock()
    app = create_app(runtime, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Gateway(runtime=runtime, clock=clock, client=client, app=app)


def signing_section(pki: Any) -> dict[str, Any]:
    return {
        "trust_anchors": [str(pki.root.cert_path)],
        "intermediates": [str(pki.ca.cert_path)],
        "crls": [str(p) for p in pki.crl_paths],
        "online_revocation": False,
    }
