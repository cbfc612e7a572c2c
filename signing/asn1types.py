"""The object identifiers pyHanko and asn1crypto's optional modules add, registered before any value is parsed.

Importing pyHanko's validators names more object identifiers in asn1crypto's tables: the qcStatements extension of
qualified (eIDAS) certificates, the CAdES signed attributes, the RFC 3161 ``tst_info`` content type, the Adobe
extensions of PDF signing certificates. asn1crypto keeps each table twice: by identifier (``_map``, which these
registrations extend) and by name, which it builds from the first once, the first time a value of that type is made.
A name registered after that is missing from the second table, so re-encoding a parsed value that carries it (a
BER-encoded signature is re-encoded in DER) fails with ``ValueError: invalid literal for int() … 'qc_statements'``,
and a value parsed before the registration keeps its identifier unnamed (pyHanko then misses the extension).

That happened whenever certificates were parsed before the validators were imported: the trust anchors read by
``dvc-gateway verify`` before its (forked) workers import the validators, or the content sniffer's look at a CMS
file. Hence :func:`register_object_identifiers`, called before the trust material is parsed and when the validators
are loaded: it imports the modules that register names, then completes the by-name table of any type whose table was
already built, so the tables are what a process that imported everything first would have.
"""

from __future__ import annotations

import threading
from importlib import import_module

from asn1crypto import core

__all__ = ["register_object_identifiers"]

#: The modules that add object identifiers to asn1crypto's tables when imported: light ones, then pyHanko's signing
#: package (which brings its signers and their HTTP clients: only where signatures are validated).
_LIGHT_MODULES = ("asn1crypto.tsp", "asn1crypto.pdf", "pyhanko_certvalidator.asn1_types")
_VALIDATOR_MODULES = ("pyhanko.sign.ades.cades_asn1", "pyhanko.sign.ades.qualified_asn1")

_LOCK = threading.Lock()


def register_object_identifiers(*, validators: bool = True) -> None:
    """Import the modules that name object identifiers and bring asn1crypto's by-name tables up to date.

    ``validators=False`` (a process that parses trust material but validates in its workers): only the light
    modules; the workers call it again with the validators, which completes the tables built meanwhile."""
    with _LOCK:
        for name in (*_LIGHT_MODULES, *(_VALIDATOR_MODULES if validators else ())):
            import_module(name)
        for kind in _object_identifier_types():
            _complete(kind)


def _object_identifier_types() -> list[type[core.ObjectIdentifier]]:
    found: list[type[core.ObjectIdentifier]] = []
    pending: list[type[core.ObjectIdentifier]] = [core.ObjectIdentifier]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found


def _complete(kind: type[core.ObjectIdentifier]) -> None:
    """Add the names ``kind``'s identifier table has and its by-name table, built earlier, lacks."""
    forward = getattr(kind, "_map", None)
    reverse = kind.__dict__.get("_reverse_map")  # asn1crypto builds it on the type of the value made
    if not isinstance(forward, dict) or not isinstance(reverse, dict):
        return  # no table, or the by-name one not built yet (asn1crypto will build it from the whole table)
    if all(name in reverse for name in forward.values()):
        return
    # The same table asn1crypto builds (a later identifier wins for a name given twice), keeping names added to the
    # by-name table directly.
    reverse.update({name: dotted for dotted, name in forward.items()})
