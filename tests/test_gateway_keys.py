"""Keys the gateway draws for itself (:func:`gateway.store.keys.shared_key`): the first to ask draws and stores one,
everyone after reads it, and processes asking at the same moment all end up with the one that was stored."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.store.keys import shared_key
from gateway.store.models import GatewayKey
from tests.databases import BACKENDS, open_database

pytestmark = pytest.mark.parametrize("kind", BACKENDS)


def test_a_key_is_drawn_once_and_read_after(kind: str, tmp_path: Path) -> None:
    with open_database(kind, tmp_path) as db:
        with db.unit_of_work() as session:
            first = shared_key(session, "console_session")
        with db.unit_of_work() as session:
            assert shared_key(session, "console_session") == first
            other = shared_key(session, "another")
        assert other != first and len(first) >= 43
        with db.unit_of_work() as session:
            assert session.scalar(select(func.count()).select_from(GatewayKey)) == 2


def test_connections_drawing_at_once_all_get_the_stored_key(kind: str, tmp_path: Path) -> None:
    with open_database(kind, tmp_path) as db:
        start = threading.Barrier(8)

        def draw(_: int) -> str:
            start.wait()
            with db.unit_of_work() as session:
                return shared_key(session, "console_session")

        with ThreadPoolExecutor(8) as pool:
            keys = list(pool.map(draw, range(8)))
        with db.unit_of_work() as session:
            stored = session.scalars(select(GatewayKey.value)).all()
    assert len(stored) == 1 and keys == [stored[0]] * 8
