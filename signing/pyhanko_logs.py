"""Keep pyHanko's log quiet about what the signature report already says.

pyHanko logs every certificate-validation outcome it maps to an AdES indication (revoked, expired, no path to a trust
anchor, a disallowed algorithm…) as a WARNING with the exception's traceback and the signer's subject: for a revoked
document, a traceback and the signer's name and ID number in the log of an application that merely verified it.
Those outcomes are the verdict the report carries (``indication``, ``sub_indication``, ``revocation``), so the
records saying them are dropped here; every other record of pyHanko (a processing error, an unexpected exception)
still reaches the log.
"""

from __future__ import annotations

import logging

from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator.errors import PathError, ValidationError

__all__ = ["EXPECTED_OUTCOMES", "QUIETED_LOGGERS", "ExpectedOutcomeFilter", "quiet_expected_outcomes"]

#: Exceptions pyHanko turns into an AdES indication of the report: certvalidator's verdicts, and pyHanko's own (a
#: chain of document timestamps that proves nothing, a past validation that could not improve the current verdict).
EXPECTED_OUTCOMES: tuple[type[BaseException], ...] = (ValidationError, PathError, SignatureValidationError)
#: The loggers pyHanko reports those outcomes on.
QUIETED_LOGGERS = (
    "pyhanko.sign.validation.generic_cms",
    "pyhanko.sign.validation.ades",
)


class ExpectedOutcomeFilter(logging.Filter):
    """Drops a record whose exception (attached, or logged as the message) is an :data:`EXPECTED_OUTCOMES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None and isinstance(record.msg, BaseException):
            exc = record.msg
        return not isinstance(exc, EXPECTED_OUTCOMES)


_FILTER = ExpectedOutcomeFilter()


def quiet_expected_outcomes() -> None:
    """Attach the filter to pyHanko's validation loggers (once; calling again changes nothing)."""
    for name in QUIETED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
