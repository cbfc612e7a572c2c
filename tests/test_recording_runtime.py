"""Recording and replay through the runtime's client factory: national portal, payment, postal; configuration errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.http import ClientFactory, ClientSettings
from adapters.national_portal import NationalPortalClient
from adapters.national_portal.wire import Channel, DossierRecord
from adapters.netguard import AddressPolicy
from adapters.payment import VNPayProvider
from adapters.postal import PostalClient
from gateway.commands.demo import SAMPLE_APPLICANTS
from gateway.config import ConfigError
from gateway.recording.har import load_directory
from gateway.recording.runtime import client_factory_for
from gateway.settings import Settings
from tests.recording_e2e_support import (
    PAYMENT_SECRET,
    PORTAL_PASSWORD,
    POSTAL_SECRET,
    REST_AGENCY,
    _runtime,
)
from tests.servers import ServerThread

# ----------------------------------------------------------------------------------------------------------------------
# National portal, payment and postal through the runtime's factory


async def _other_upstreams(factory: ClientFactory, urls: dict[str, str]) -> list[Any]:
    """A national portal sync, a payment query and a postal order through ``factory``: what each answered."""
    policy = AddressPolicy(allow_private=True)
    answers: list[Any] = []
    async with factory.client("national_portal", ClientSettings(base_url=urls["national"], address_policy=policy)) as h:
        portal = NationalPortalClient(h, username="lgsp", password=PORTAL_PASSWORD, dstcode="H38", madonvi="H38")
        record = DossierRecord(
            code=f"{REST_AGENCY}-261123-0001",
            procedure_code="1.009794",
            status_code=2,
            received_at=datetime.now(UTC),
            due_at=datetime.now(UTC) + timedelta(days=15),
            channel=Channel.ONLINE,
            applicant_name=str(SAMPLE_APPLICANTS[0]["full_name"]),
            phone=str(SAMPLE_APPLICANTS[0]["phone"]),
        )
        result = await portal.sync_dossiers([record], updating=False)
        answers.append(("national", len(result.accepted), len(result.failed)))
    async with factory.client("payment", ClientSettings(base_url=urls["payment"], address_policy=policy)) as h:
        vnpay = VNPayProvider(h, merchant_code="DVCH38", secret=PAYMENT_SECRET, payment_url=f"{urls['payment']}/pay")
        status = await vnpay.query("E2E-REF-1", transaction_date="20261123083000")
        answers.append(("payment", status.state, status.reference))
    async with factory.client("postal", ClientSettings(base_url=urls["postal"], address_policy=policy)) as h:
        postal = PostalClient(h, secret=POSTAL_SECRET, attempts=1)
        applicant = {"name": "Trần Thị B", "phone": "0987654321", "address": "12 Trần Phú, Hà Tĩnh"}
        office = {"name": "Bộ phận Một cửa tỉnh", "phone": "02393123456", "address": "1 Nguyễn Du, Hà Tĩnh"}
        items = [{"name": "Bản gốc giấy tờ đối chiếu", "quantity": 1}]
        order = await postal.create_order("pickup", record.code, applicant, office, items, f"{record.code}:pickup")
        answers.append(("postal", order.order_code, order.status))
    return answers


def test_national_portal_payment_and_postal_record_and_replay_through_the_runtime(tmp_path: Path) -> None:
    from gateway.simulators.national_portal import create_app as national_app
    from gateway.simulators.payment import create_app as payment_app
    from gateway.simulators.postal import create_app as postal_app

    cassettes = tmp_path / "cassettes"
    with (
        ServerThread(national_app(password=PORTAL_PASSWORD, madonvi="H38")) as national,
        ServerThread(payment_app(secret=PAYMENT_SECRET)) as payment,
        ServerThread(postal_app(secret=POSTAL_SECRET)) as postal,
    ):
        urls = {"national": national.base_url, "payment": payment.base_url, "postal": postal.base_url}
        record = _runtime(tmp_path, "record", cassettes)
        live = asyncio.run(_other_upstreams(record.client_factory, urls))
    assert live[0] == ("national", 1, 0) and live[2][2] == "accepted"
    upstreams = {e.upstream for e in load_directory(cassettes)}
    assert upstreams == {"national_portal", "payment", "postal"}
    data = b"".join(p.read_bytes() for p in cassettes.glob("*.har"))
    for secret in (PORTAL_PASSWORD, PAYMENT_SECRET, POSTAL_SECRET, "Trần Thị B", "0987654321", "12 Trần Phú"):
        assert secret.encode() not in data and json.dumps(secret).strip('"').encode() not in data
    replay = _runtime(tmp_path, "replay", cassettes)
    assert asyncio.run(_other_upstreams(replay.client_factory, urls)) == live
    assert replay.client_factory.wrappers[-1].replayer.index.stats.misses == 0


# ----------------------------------------------------------------------------------------------------------------------
# Configuration errors


def test_bad_recording_settings_are_one_line_config_errors(tmp_path: Path) -> None:
    from adapters.http import ClientFactory

    base = ClientFactory()
    for section, message in (
        ({"mode": "sometimes"}, "[recording] mode: must be one of 'off', 'record' or 'replay'"),
        ({"mode": "replay", "faults": [{"kind": "explode"}]}, "[recording] faults[0].kind: must be one of 'delay'"),
        ({"mode": "record", "faults": [{"kind": "delay", "seconds": "soon"}]}, "[recording] faults[0].seconds:"),
        ({"mode": "record", "ignore_json_keys": "at"}, "[recording] ignore_json_keys: must be a list"),
    ):
        with pytest.raises(ConfigError) as caught:
            Settings.from_raw({"recording": section}, tmp_path)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    missing = Settings.from_raw({"recording": {"mode": "replay", "directory": "none"}}, tmp_path).recording
    with pytest.raises(ConfigError, match=r"^\[recording\] directory: .*none: no such cassette directory$"):
        client_factory_for(missing, base)
    assert client_factory_for(Settings.from_raw({}, tmp_path).recording, base) is base


def test_serve_refuses_a_bad_recording_section_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/g.db"\n[server]\nport = {port}\n'
        f'[recording]\nmode = "replay"\ndirectory = "{tmp_path / "missing"}"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "no such cassette directory" in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
