"""The errors particular to SOAP agencies, and the one-line excerpts their messages use.

A business rejection is a :class:`SoapFaultError`; a service description that cannot be used is a
:class:`WsdlError`. Messages never quote an answer beyond a short single-line excerpt.
"""

from __future__ import annotations

from adapters.errors import PermanentError

__all__ = ["SoapFaultError", "WsdlError", "one_line"]

_EXCERPT = 200


def one_line(text: str, limit: int = _EXCERPT) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class SoapFaultError(PermanentError):
    """The agency rejected the request with a SOAP fault carrying a business detail (``LoiNghiepVu``)."""

    def __init__(
        self,
        message: str,
        *,
        upstream: str = "",
        status_code: int | None = None,
        fault_code: str | None = None,
        business_code: str | None = None,
        business_message: str | None = None,
    ) -> None:
        super().__init__(message, upstream=upstream, status_code=status_code)
        self.fault_code = fault_code
        self.business_code = business_code
        self.business_message = business_message


class WsdlError(PermanentError):
    """The service description cannot be used (a document missing, not XML, too large, invalid, refused)."""
