"""Where the trust material lives: the ``[signing]`` configuration section as a plain value.

:class:`TrustSettings` imports nothing beyond the standard library (and :mod:`signing.limits`, which imports
nothing else), so configuration loading and command-line
parsing can name it without loading pyHanko; :meth:`signing.trust.TrustStore.load` turns it into parsed material.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .limits import DEFAULT_BUDGET, DEFAULT_LIMITS, Budget, Limits

__all__ = ["TrustSettings"]


@dataclass(frozen=True)
class TrustSettings:
    """Where the trust material lives, and what validating one document may cost; the ``[signing]`` section."""

    trust_anchors: Sequence[str | Path] = ()
    intermediates: Sequence[str | Path] = ()
    crls: Sequence[str | Path] = ()
    online_revocation: bool = False
    fetch_timeout_seconds: float = 10.0
    #: Size caps checked before parsing.
    limits: Limits = DEFAULT_LIMITS
    #: Memory and time per document (validation in a worker process).
    budget: Budget = DEFAULT_BUDGET
