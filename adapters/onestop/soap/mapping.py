"""The reference service's operations and how an agency's variant of it is described.

:class:`SoapMapping` reads a registration document's ``mapping``: their operation names, element names (both ways,
at any depth), status values and the port to use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from adapters.onestop import wsdl as _shipped

__all__ = ["OPERATIONS", "REFERENCE_NAMESPACE", "REFERENCE_OPERATIONS", "SoapMapping"]

REFERENCE_NAMESPACE = _shipped.REFERENCE_NAMESPACE
OPERATIONS = ("deliver", "status", "supplement", "withdraw")
#: Our operation → the reference service's operation (Vietnamese domain names).
REFERENCE_OPERATIONS: Mapping[str, str] = MappingProxyType(
    {"deliver": "TiepNhanHoSo", "status": "LayTrangThaiHoSo", "supplement": "BoSungHoSo", "withdraw": "RutHoSo"}
)

_MAPPING_KEYS = frozenset({"operations", "fields", "statuses", "soap_version", "port"})
_NCNAME = re.compile(r"[A-Za-z_][\w.\-]*\Z")


def _name_map(value: Any, name: str, *, xml_names: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
    ):
        raise ValueError(f"mapping.{name} must map names to non-empty strings")
    if xml_names:
        for key, theirs in value.items():
            if not _NCNAME.match(theirs):
                raise ValueError(f"mapping.{name}.{key}: {theirs!r} is not an XML name")
    return dict(value)


@dataclass(frozen=True)
class SoapMapping:
    """An agency's differences from the reference service: operation names, element names, status values, port.

    A registration document describes them as::

        {"operations": {"deliver": "NhanHoSo", "status": "TraCuuHoSo"},
         "fields": {"MaHoSo": "SoHoSo", "KhoaYeuCau": "MaGiaoDich"},
         "statuses": {"2": "received", "4": "processing"},
         "soap_version": "1.2", "port": "MotCuaSoap12"}

    ``operations`` renames our operations to theirs, ``fields`` reference element names to theirs (at any depth,
    both ways), ``statuses`` their status values to ours; ``soap_version`` / ``port`` pick the port (default: the
    first SOAP port of the first service).
    """

    operations: Mapping[str, str] = field(default_factory=lambda: dict(REFERENCE_OPERATIONS))
    fields: Mapping[str, str] = field(default_factory=dict)  # reference element name → theirs
    statuses: Mapping[str, str] = field(default_factory=dict)  # theirs → ours
    soap_version: Literal["1.1", "1.2"] | None = None
    port: str | None = None

    @classmethod
    def parse(cls, mapping: Mapping[str, Any] | None) -> SoapMapping:
        """Validate a registration document's ``mapping`` (``ValueError`` with a clear message when invalid)."""
        if not mapping:
            return cls()
        if not isinstance(mapping, Mapping):
            raise ValueError("mapping must be an object")
        unknown = set(mapping) - _MAPPING_KEYS
        if unknown:
            raise ValueError(f"mapping: unknown keys {sorted(unknown)} (allowed: {sorted(_MAPPING_KEYS)})")
        operations = _name_map(mapping.get("operations"), "operations", xml_names=True)
        for operation in operations:
            if operation not in OPERATIONS:
                raise ValueError(
                    f"mapping.operations: unknown operation {operation!r} (allowed: {', '.join(OPERATIONS)})"
                )
        fields = _name_map(mapping.get("fields"), "fields", xml_names=True)
        if len(set(fields.values())) != len(fields):
            raise ValueError("mapping.fields: two fields are mapped to the same name")
        statuses = _name_map(mapping.get("statuses"), "statuses", xml_names=False)
        version = mapping.get("soap_version")
        if version is not None and version not in ("1.1", "1.2"):
            raise ValueError("mapping.soap_version must be '1.1' or '1.2'")
        port = mapping.get("port")
        if port is not None and (not isinstance(port, str) or not port):
            raise ValueError("mapping.port must be a port name")
        return cls(
            operations={**REFERENCE_OPERATIONS, **operations},
            fields=fields,
            statuses=statuses,
            soap_version=version,
            port=port,
        )

    def operation(self, operation: str) -> str:
        """Their name of our operation (``deliver`` → ``TiepNhanHoSo`` by default)."""
        return self.operations[operation]

    def name(self, reference: str) -> str:
        """Their name of a reference element."""
        return self.fields.get(reference, reference)

    def reference_name(self, theirs: str) -> str:
        """The reference name of one of their elements."""
        for ours, mapped in self.fields.items():
            if mapped == theirs:
                return ours
        return theirs

    def outbound(self, value: Any) -> Any:
        """``value`` (dicts and lists, reference names) with element names renamed to theirs, at any depth
        (``value`` itself when no name is renamed)."""
        if not self.fields:
            return value
        if isinstance(value, Mapping):
            return {self.name(key): self.outbound(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.outbound(item) for item in value]
        return value

    def inbound(self, value: Any) -> Any:
        """``value`` with their element names renamed to the reference names, at any depth (``value`` itself when
        no name is renamed)."""
        if not self.fields:
            return value
        if isinstance(value, Mapping):
            return {self.reference_name(key): self.inbound(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.inbound(item) for item in value]
        return value

    def status(self, value: Any) -> str | None:
        """Our status name for the agency's status value."""
        if value is None:
            return None
        text = str(value).strip()
        return self.statuses.get(text, text) or None
