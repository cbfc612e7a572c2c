"""Clients for agency one-stop systems (*một cửa điện tử*).

The core depends on :class:`~adapters.onestop.port.OneStopClient` only;
:class:`~adapters.onestop.rest.RestOneStopClient` speaks the reference REST contract
(``docs/agency-rest-contract.md``), the SOAP client the reference service description. Neither imports the daemon:
a portal backend can use them on their own.
"""

from adapters.onestop.port import Acknowledgement, AgencyStatus, DeliveryReceipt, OneStopClient
from adapters.onestop.rest import RestMapping, RestOneStopClient

__all__ = [
    "Acknowledgement",
    "AgencyStatus",
    "DeliveryReceipt",
    "OneStopClient",
    "RestMapping",
    "RestOneStopClient",
]
