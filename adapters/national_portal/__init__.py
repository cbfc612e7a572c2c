"""Client for the national public-service portal (*Cổng Dịch vụ công quốc gia*).

Dossier sync (``DongBoHoSoMC``), progress updates (``CapNhatTienDoHoSoMC``), status lookup (``TraCuuHoSoMC``) and
the procedure catalogue, over a session login with the province's ``dstcode``. The wire shape lives in
:mod:`adapters.national_portal.wire` alone, what the gateway calls in :class:`NationalPortal` (the port). Usable on
its own by a portal backend: it never imports the daemon.
"""

from adapters.national_portal.client import BatchResult, NationalPortalClient, RecordFailure
from adapters.national_portal.port import NationalPortal
from adapters.national_portal.wire import (
    Channel,
    DossierRecord,
    PortalProcedure,
    ProgressRecord,
    RatingRecord,
    format_time,
    parse_time,
    procedure_from_wire,
)

__all__ = [
    "BatchResult",
    "Channel",
    "DossierRecord",
    "NationalPortal",
    "NationalPortalClient",
    "PortalProcedure",
    "ProgressRecord",
    "RatingRecord",
    "RecordFailure",
    "format_time",
    "parse_time",
    "procedure_from_wire",
]
