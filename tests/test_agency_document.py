"""The dossier as an agency receives it (:func:`gateway.views.agency_document`), pinned field for field: a dossier
with several components (a replaced revision, a detached signature, an empty file), fees (unpaid, paid, free) and
payments (failed, pending), handed over to a second agency (liên thông)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from gateway.store.database import Database
from gateway.store.models import Blob, Component, Dossier, Fee, HistoryEntry, Payment, Procedure
from gateway.views import agency_document, agency_documents

LEAD = "000.00.23.H38"
SECOND = "000.00.24.H38"
CODE = "000.00.23.H38-261201-0007"
AT = datetime(2026, 12, 1, 2, 30, tzinfo=UTC)
CONTENTS = {"pdf": b"%PDF-1.7 first", "old": b"second, first revision", "new": b"second, replaced", "sig": b"CMS"}


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def _component(code: str, content: bytes, *, revision: int = 1, current: bool = True, **extra: Any) -> Component:
    return Component(
        code=code,
        name=f"Thành phần {code}",
        filename=f"{code.lower()}.pdf",
        content_type="application/pdf",
        size=len(content),
        sha256=_sha(content),
        verification={"status": "not_signed"},
        originals_check_required=code == "TP1",
        revision=revision,
        current=current,
        created_at=AT,
        **extra,
    )


def _dossier() -> Dossier:
    return Dossier(
        code=CODE,
        procedure_code="PIN.1",
        agency_code=SECOND,
        lead_agency_code=LEAD,
        status="processing",
        applicant={"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345"},
        summary="Cấp giấy phép xây dựng",
        return_method="postal",
        delivery_address={"line": "1 Tràng Tiền", "province": "01"},
        extra={"note": "x"},
        originals_check_required=True,
        submitted_at=AT,
        received_at=AT,
        acknowledge_by=datetime(2026, 12, 2, 2, 30, tzinfo=UTC),
        due_at=datetime(2026, 12, 22, 10, 0, tzinfo=UTC),
        calendar_version="vn-2026.1",
        components=[
            _component("TP1", CONTENTS["pdf"], detached_signature_sha256=_sha(CONTENTS["sig"])),
            _component("TP2", CONTENTS["old"], current=False),
            _component("TP3", b""),
            _component("TP2", CONTENTS["new"], revision=2),
        ],
        fees=[
            Fee(code="LP1", name="Lệ phí", amount=150_000),
            Fee(code="LP2", name="Phí thẩm định", amount=50_000, paid=True, paid_at=AT),
            Fee(code="LP3", name="Miễn phí", amount=0),
        ],
        history=[
            HistoryEntry(status="received", at=AT, actor="portal", details={}),
            HistoryEntry(
                status="processing",
                at=AT,
                actor=LEAD,
                details={"transfer_to": SECOND, "transfer_due_at": "2026-12-15T17:00:00+07:00"},
            ),
        ],
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'gateway.db'}")
    database.upgrade()
    with database.unit_of_work() as session:
        procedure = Procedure(code="PIN.1", name="Thủ tục", agencies=[LEAD, SECOND], processing_days=15)
        procedure.fees_after_result = True
        session.add(procedure)
        session.add_all(Blob(sha256=_sha(c), size=len(c), content=c) for c in [*CONTENTS.values(), b""])
        session.flush()
        dossier = _dossier()
        session.add(dossier)
        session.flush()
        for reference, status in (("PAY-1", "failed"), ("PAY-2", "pending"), ("PAY-3", "pending")):
            session.add(
                Payment(dossier_id=dossier.id, provider="vnpay", reference=reference, amount=150_000, status=status)
            )
    yield database
    database.dispose()


def _expected_component(code: str, content: bytes, revision: int, signature: bytes | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"Thành phần {code}",
        "filename": f"{code.lower()}.pdf",
        "content_type": "application/pdf",
        "size": len(content),
        "sha256": _sha(content),
        "revision": revision,
        "content_base64": _b64(content),
        "detached_signature_base64": None if signature is None else _b64(signature),
        "originals_check_required": code == "TP1",
        "verification": {"status": "not_signed"},
    }


EXPECTED: dict[str, Any] = {
    "code": CODE,
    "procedure_code": "PIN.1",
    "agency_code": SECOND,
    "lead_agency_code": LEAD,
    "channel": "online",
    "summary": "Cấp giấy phép xây dựng",
    "applicant": {"kind": "citizen", "full_name": "Nguyễn Văn A", "id_number": "001099012345"},
    "submitted_at": "2026-12-01T09:30:00+07:00",
    "received_at": "2026-12-01T09:30:00+07:00",
    "acknowledge_by": "2026-12-02T09:30:00+07:00",
    "due_at": "2026-12-22T17:00:00+07:00",
    "agency_due_at": "2026-12-15T17:00:00+07:00",
    "calendar_version": "vn-2026.1",
    "originals_check_required": True,
    "return_method": "postal",
    "delivery_address": {"line": "1 Tràng Tiền", "province": "01"},
    "components": [
        _expected_component("TP1", CONTENTS["pdf"], 1, CONTENTS["sig"]),
        _expected_component("TP2", CONTENTS["new"], 2),
        _expected_component("TP3", b"", 1),
    ],
    "fees": [
        {"code": "LP1", "name": "Lệ phí", "amount": 150_000, "paid": False},
        {"code": "LP2", "name": "Phí thẩm định", "amount": 50_000, "paid": True},
        {"code": "LP3", "name": "Miễn phí", "amount": 0, "paid": False},
    ],
    "payment": {"status": "pending", "unpaid_amount": 150_000, "reference": "PAY-3", "fees_after_result": True},
    "extra": {"note": "x"},
}


def test_the_agency_document_is_pinned(db: Database) -> None:
    with db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == CODE)).one()
        document = agency_document(session, dossier, agency_code=SECOND)
    assert document == EXPECTED
    assert list(document) == list(EXPECTED)  # the order of the fields too (the JSON sent is byte for byte the same)


def test_the_lead_agency_gets_the_dossier_due_date(db: Database) -> None:
    with db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == CODE)).one()
        document = agency_document(session, dossier, agency_code=LEAD)
    assert document == {**EXPECTED, "agency_code": LEAD, "agency_due_at": EXPECTED["due_at"]}


def test_components_fees_and_files_are_read_in_a_few_queries(db: Database) -> None:
    """One query for the dossier, its components and the files of every current one (however many), one for its
    fees, one for its payments (a fee is unpaid)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with db.unit_of_work() as session:
        dossier = session.scalars(select(Dossier).where(Dossier.code == CODE)).one()
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            document = agency_document(session, dossier, agency_code=LEAD)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert len(document["components"]) == 3
    reading_files = [s for s in statements if "blobs" in s]
    assert len(reading_files) == 1 and "JOIN components" in reading_files[0]
    assert [s for s in statements if "components" in s] == reading_files
    assert len(statements) == 3


def test_a_batch_reads_every_dossiers_payments_in_one_query(db: Database) -> None:
    """Documents rendered together (a claimed batch) have each their own payment status, from one read of payments."""
    with db.unit_of_work() as session:
        unpaid = _dossier()
        unpaid.code, unpaid.components, unpaid.history = "000.00.23.H38-261201-0008", [], []
        free = _dossier()
        free.code, free.components, free.history = "000.00.23.H38-261201-0009", [], []
        free.fees = [Fee(code="LP3", name="Miễn phí", amount=0)]
        session.add_all([unpaid, free])
        session.flush()
        session.add(Payment(dossier_id=unpaid.id, provider="vnpay", reference="PAY-9", amount=1, status="failed"))
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    wanted = [(CODE, SECOND), (unpaid.code, LEAD), (free.code, LEAD), ("000.00.23.H38-261201-0404", LEAD)]
    with db.unit_of_work() as session:
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            found = agency_documents(session, wanted)
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
    assert list(found) == wanted[:3]  # a dossier that does not exist is left out
    documents = list(found.values())
    assert [document["payment"] for document in documents] == [
        EXPECTED["payment"],
        {"status": "unpaid", "unpaid_amount": 150_000, "reference": None, "fees_after_result": True},
        {"status": "none", "unpaid_amount": 0, "reference": None, "fees_after_result": True},
    ]
    assert documents[0] == EXPECTED
    assert sum("FROM payments" in s for s in statements) == 1
