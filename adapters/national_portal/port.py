"""What the gateway needs from the national public-service portal (the port).

:class:`NationalPortal` lists exactly the calls the gateway makes: the sync flow sends dossiers, their progress and
ratings, the operators' commands look dossiers up and pull the procedure catalogue.
:class:`~adapters.national_portal.client.NationalPortalClient` implements it over HTTP; tests give the flow an
in-memory fake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from adapters.national_portal.client import BatchResult
from adapters.national_portal.wire import DossierRecord, ProgressRecord, RatingRecord

__all__ = ["NationalPortal"]


@runtime_checkable
class NationalPortal(Protocol):
    """The national portal. Every upstream failure is an :mod:`adapters.errors` error.

    ``batch_size`` is the number of records the portal takes per call.
    """

    batch_size: int

    async def sync_dossiers(self, records: Iterable[DossierRecord], *, updating: bool) -> BatchResult[DossierRecord]:
        """``DongBoHoSoMC``: send dossiers, new (``updating=False``) or already known to the portal (``True``)."""
        ...

    async def update_progress(self, records: Iterable[ProgressRecord]) -> BatchResult[ProgressRecord]:
        """``CapNhatTienDoHoSoMC``: send processing steps; the result lists the accepted and refused records."""
        ...

    async def send_ratings(self, records: Iterable[RatingRecord]) -> BatchResult[RatingRecord]:
        """``DanhGiaHaiLongMC``: send applicants' satisfaction ratings; the result lists accepted and refused ones."""
        ...

    async def lookup_dossiers(self, codes: Iterable[str]) -> dict[str, int | None]:
        """``TraCuuHoSoMC``: the ``TrangThaiHoSo`` the portal holds for each code (``None``: it has none)."""
        ...

    async def pull_procedures(self) -> list[dict[str, Any]]:
        """``LayDanhSachTTHC``: the portal's procedure catalogue, entries as the portal gives them."""
        ...
