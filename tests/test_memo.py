"""What a transaction has read and may read again (``gateway.store.memo``): the facts kept there are forgotten by
the writes that change them. (A write group's shared memo: ``tests/test_write_groups.py``.)"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from gateway import registry
from gateway.registry import Registration, register, remove_agency
from tests.databases import open_database

AGENCY = "000.00.23.H38"
REGISTRATION = Registration.model_validate(
    {
        "code": AGENCY,
        "name": "Sở Xây dựng",
        "protocol": "rest",
        "endpoint": "https://motcua.soxaydung.example.vn/api",
        "procedures": ["1.009794"],
    }
)


def test_whether_an_agency_is_registered_is_read_once_and_forgotten_when_registrations_change(tmp_path: Path) -> None:
    """Read once per transaction; registering or removing an agency in the same transaction is seen at once."""
    reads: list[str] = []

    def statement(_conn: object, _cursor: object, sql: str, *_args: object) -> None:
        if " ".join(sql.split()) == "SELECT agencies.code FROM agencies WHERE agencies.code = ?":
            reads.append(sql)  # the look-up itself, not the registry's reads of whole rows

    with open_database("sqlite", tmp_path) as db:
        event.listen(db.engine, "before_cursor_execute", statement)
        with db.unit_of_work() as session:
            assert [registry.is_registered(session, AGENCY) for _ in range(3)] == [False] * 3
            assert len(reads) == 1
            register(session, REGISTRATION)
            assert registry.is_registered(session, AGENCY)
            assert remove_agency(session, AGENCY) is True
            assert not registry.is_registered(session, AGENCY)
        with db.unit_of_work() as session:  # a new transaction reads again
            assert not registry.is_registered(session, AGENCY)
        assert len(reads) == 4  # the first read, after the registration, after the removal, in the new transaction
