"""SOAP deliveries per second through the gateway, beside the floor of building the same envelope with lxml and
posting it with httpx directly to the same simulator.

The SOAP agency simulator (``dvc-gateway simulate agency --protocol soap``: the reference service, requests
validated against ``hoso.xsd``, idempotency keys honoured) runs in a child process. The gateway side runs here on a
SQLite database (WAL) holding N submitted dossiers, each with its ``agency.deliver`` message:

- *gateway (dispatcher)*: :meth:`GatewayDispatcher.dispatch` for each message: the dossier and the agency's
  registration read from the database, the agency document built (files in base64), then the
  :class:`~adapters.onestop.soap.SoapOneStopClient` (zeep over httpx, the WSDL loaded at the first delivery) builds
  ``TiepNhanHoSo``, posts it (SSRF guard, size cap, answer screening) and parses the answer;
- *gateway (outbox)*: the same behind an :class:`~gateway.workers.OutboxWorker` (claims, outcomes recorded);
- *floor*: for the same documents, the ``TiepNhanHoSo`` envelope built with lxml and posted with a plain
  ``httpx.AsyncClient`` (same concurrency, same idempotency keys), the answer's status checked, nothing else.

Each side delivers its first 16 messages untimed (connections, caches, the first statements compiled, the gateway's
agency client built and its WSDL loaded), then the N others timed. The floor runs first and again last. It prints
deliveries per second for each and the ratios: the gateway's rate over the floor's, both floor runs taken together
(1.00 = as fast as the floor; the target through the outbox is 0.5). The simulator is reset between runs.
``--profile FILE`` writes a pyinstrument report of the run through the outbox (the event loop's thread) to FILE.

Run: ``.venv/bin/python bench/bench_soap.py [--quick] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from lxml import etree  # noqa: E402
from lxml.builder import ElementMaker  # noqa: E402

from bench.support import (  # noqa: E402
    WARMUP,
    Cpu,
    after_warmup,
    both_runs,
    delivered,
    floor_phase,
    outbox_rate,
    profiled,
    rate_table,
    reset_simulator,
    start_simulator,
)
from gateway import messages, outbox  # noqa: E402
from gateway.auth import Principal  # noqa: E402
from gateway.bootstrap import Composition  # noqa: E402
from gateway.catalogue import import_procedures, parse_catalogue  # noqa: E402
from gateway.daemon import settle_after_start  # noqa: E402
from gateway.logging import setup_logging  # noqa: E402
from gateway.registry import Registration, register  # noqa: E402
from gateway.runtime import Runtime  # noqa: E402
from gateway.serving import run_loop  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.database import Database  # noqa: E402
from gateway.store.models import Dossier, utcnow  # noqa: E402
from gateway.workers import MessageView  # noqa: E402
from tests.core_support import submit  # noqa: E402
from tests.documents import make_pdf  # noqa: E402

AGENCY = "000.00.23.H38"
CONCURRENCY = 8
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
MC = "urn:dvc:motcua:1.0"
CATALOGUE = [
    {
        "code": "BENCH.1",
        "name": "Thủ tục đo hiệu năng",
        "agencies": [AGENCY],
        "processing_days": 15,
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False}],
        "fees": [{"code": "LP1", "name": "Lệ phí", "amount": 150000}],
    }
]


async def prepare(work: Path, sim_url: str, count: int) -> Runtime:
    """A runtime on a fresh database with ``count`` submitted dossiers (each with a small PDF) awaiting delivery."""
    db = Database.connect(f"sqlite:///{work / 'gateway.db'}")
    db.upgrade()
    settings = Settings.from_raw({"registry": {"allow_private_endpoints": True, "wsdl_cache_dir": "wsdl-cache"}}, work)
    runtime = Runtime(settings=settings, db=db)
    with db.unit_of_work() as session:
        import_procedures(session, parse_catalogue(json.dumps(CATALOGUE)))
        document = {
            "code": AGENCY,
            "name": "Sở Xây dựng",
            "protocol": "soap",
            "wsdl": f"{sim_url}/soap?wsdl",
            "procedures": ["BENCH.1"],
        }
        register(session, Registration.model_validate(document))
    pdf = base64.b64encode(make_pdf("Don de nghi", padding=20_000)).decode("ascii")
    submission = {
        "procedure_code": "BENCH.1",
        "agency_code": AGENCY,
        "applicant": {"full_name": "Nguyễn Văn A", "id_number": "001099012345", "phone": "0912345678"},
        "summary": "Cấp giấy phép xây dựng",
        "components": [{"code": "TP1", "name": "Đơn đề nghị", "filename": "don.pdf", "content_base64": pdf}],
        "fees": [{"code": "LP1", "name": "Lệ phí", "amount": 150000}],
    }
    for _ in range(count):
        answer = await submit(runtime, Principal("portal"), submission, idempotency_key=None, now=utcnow())
        assert answer.status == 201
    return runtime


async def pending(runtime: Runtime) -> list[tuple[MessageView, dict[str, Any]]]:
    """Every pending delivery: the message as a worker would see it, and the agency document (what the floor sends)."""
    from sqlalchemy import select

    from gateway.views import agency_document

    def read(session: Any) -> list[tuple[MessageView, dict[str, Any]]]:
        found = []
        for message in outbox.list_messages(session, outbox.PENDING, limit=10**6):
            if message.kind != messages.AGENCY_DELIVER:
                continue
            dossier = session.scalars(select(Dossier).where(Dossier.code == message.ordering_key)).one()
            found.append((MessageView.of(message), agency_document(session, dossier, agency_code=AGENCY)))
        return found

    return await runtime.db.run(read)


# ----------------------------------------------------------------------------------------------------------------------
# The floor: lxml + httpx


def _leaf(parent: etree._Element, name: str, value: Any) -> None:
    if value not in (None, ""):
        etree.SubElement(parent, f"{{{MC}}}{name}").text = str(value)


def floor_envelope(key: str, doc: dict[str, Any]) -> bytes:
    """``TiepNhanHoSo`` for ``doc`` (the agency document), built with lxml in the order ``hoso.xsd`` sets."""
    mc = ElementMaker(namespace=MC, nsmap={"mc": MC})
    hoso = mc.HoSo()
    for name, value in (
        ("MaHoSo", doc["code"]),
        ("MaTTHC", doc["procedure_code"]),
        ("MaCoQuan", doc.get("agency_code")),
        ("TrichYeu", doc.get("summary")),
        ("KenhNop", doc.get("channel")),
        ("NgayTiepNhan", doc.get("received_at") or doc.get("submitted_at")),
        ("NgayHenTra", doc.get("due_at")),
    ):
        _leaf(hoso, name, value)
    applicant = doc.get("applicant") or {}
    person = etree.SubElement(hoso, f"{{{MC}}}NguoiNop")
    for name, field in (
        ("LoaiDoiTuong", "kind"),
        ("HoTen", "full_name"),
        ("SoGiayTo", "id_number"),
        ("SoDienThoai", "phone"),
        ("Email", "email"),
        ("DiaChi", "address"),
    ):
        _leaf(person, name, applicant.get(field))
    for component in doc.get("components") or ():
        item = etree.SubElement(hoso, f"{{{MC}}}ThanhPhanHoSo")
        for name, field in (
            ("MaThanhPhan", "code"),
            ("TenThanhPhan", "name"),
            ("TenTep", "filename"),
            ("LoaiNoiDung", "content_type"),
            ("MaBam", "sha256"),
            ("NoiDung", "content_base64"),
        ):
            _leaf(item, name, component.get(field))
    for fee in doc.get("fees") or ():
        item = etree.SubElement(hoso, f"{{{MC}}}PhiLePhi")
        for name, field in (("MaPhi", "code"), ("TenPhi", "name"), ("SoTien", "amount")):
            _leaf(item, name, fee.get(field))
    _leaf(hoso, "YeuCauDoiChieuBanGoc", "true" if doc.get("originals_check_required") else "false")
    _leaf(hoso, "HinhThucTraKetQua", doc.get("return_method"))
    soap = ElementMaker(namespace=SOAP11, nsmap={"soap": SOAP11})
    envelope = soap.Envelope(soap.Body(mc.TiepNhanHoSo(mc.KhoaYeuCau(key), hoso)))
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


async def floor_rate(sim_url: str, work: list[tuple[MessageView, dict[str, Any]]]) -> float:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{MC}#TiepNhanHoSo"'}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=sim_url, timeout=60, limits=limits, trust_env=False) as client:

        async def worker(items: Iterator[tuple[MessageView, dict[str, Any]]]) -> None:
            for message, doc in items:
                response = await client.post(
                    "/soap", content=floor_envelope(message.idempotency_key, doc), headers=headers
                )
                if response.status_code != 200:
                    raise RuntimeError(f"floor: HTTP {response.status_code}")

        return await after_warmup(work, worker, CONCURRENCY)


# ----------------------------------------------------------------------------------------------------------------------
# The gateway


async def dispatcher_rate(runtime: Runtime, work: list[tuple[MessageView, dict[str, Any]]]) -> float:
    dispatcher = Composition(runtime)
    try:

        async def worker(items: Iterator[tuple[MessageView, dict[str, Any]]]) -> None:
            for message, _doc in items:
                await dispatcher.dispatch(message)

        return await after_warmup(work, worker, CONCURRENCY)
    finally:
        await dispatcher.aclose()


async def run(work: Path, sim_url: str, count: int, cpu: Cpu, profile: str | None = None) -> None:
    total = count + WARMUP
    runtime = await prepare(work, sim_url, total)
    settle_after_start()  # as ``dvc-gateway worker`` does once running
    try:
        items = await pending(runtime)
        size = len(floor_envelope(items[0][0].idempotency_key, items[0][1]))
        print(f"SOAP delivery of {count} dossiers (TiepNhanHoSo ~{size / 1000:.0f} kB each) to {sim_url}/soap")
        print(f"({CONCURRENCY} concurrent deliveries; the simulator validates every request against hoso.xsd)")
        floor_run = functools.partial(floor_rate, sim_url, items)
        before = await floor_phase(sim_url, floor_run, total, cpu, "floor (lxml + httpx), before")
        await reset_simulator(sim_url)
        with cpu.phase("gateway (dispatcher)"):
            through_dispatcher = await dispatcher_rate(runtime, items)
        assert await delivered(sim_url) == total
        await reset_simulator(sim_url)
        with profiled(profile), cpu.phase("gateway (outbox + dispatcher)"):
            through_outbox = await outbox_rate(runtime, total, CONCURRENCY)
        assert await delivered(sim_url) == total
        after = await floor_phase(sim_url, floor_run, total, cpu, "floor (lxml + httpx), after")
        floor = both_runs(before, after)
        rows = [
            ("gateway (outbox + dispatcher)", through_outbox),
            ("gateway (dispatcher)", through_dispatcher),
            ("floor (lxml + httpx), before", before),
            ("floor (lxml + httpx), after", after),
        ]
        print(rate_table("deliveries/s", rows, floor=floor))
        print(f"ratio {through_outbox / floor:.2f}x the floor through the outbox (target >= 0.5x; 1.00 = as fast)")
        print(cpu.report(total))
    finally:
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer deliveries")
    parser.add_argument("--profile", metavar="FILE", help="write a pyinstrument report of the outbox run")
    args = parser.parse_args()
    setup_logging("ERROR")
    count = 60 if args.quick else 400
    with tempfile.TemporaryDirectory(prefix="bench-soap-") as tmp:
        process, sim_url = start_simulator(Path(tmp), "--protocol", "soap")
        try:
            # Both sides on the event loop ``dvc-gateway worker`` runs on (``[server] event_loop``, uvloop by default).
            run_loop(run(Path(tmp), sim_url, count, Cpu(process.pid), args.profile))
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
