"""Check an agency's WSDL before it is registered (``dvc-gateway agency check``, registration of protocol ``soap``).

:func:`check_wsdl` loads the description the way :class:`~adapters.onestop.soap.SoapOneStopClient` does (every
import and include fetched through the gateway's factory client, the address policy, size and count limits, no
DTDs or entities, zeep with ``forbid_external``) but never from the offline cache nor from a loader's memory: it
checks the live service. It then confirms that the port the client would use has the (mapped) reference operations
with compatible inputs:

* each operation exists (``TiepNhanHoSo``, ``LayTrangThaiHoSo``, ``BoSungHoSo``, ``RutHoSo``, or the names the
  mapping gives);
* its input holds the elements the gateway must send (the dossier code, the idempotency key…, mapped);
* its input requires no element the gateway cannot fill (an element of their schema that is neither in the
  reference service nor mapped to one of its elements).

The answer, :class:`WsdlCheck`, reports the SOAP versions, bindings and ports found; when something is wrong,
``ok`` is false and ``message`` is one line naming what is missing or why the description could not be loaded
(a 404 on an import, not XML, too large, a DTD, a blocked address…).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from adapters.errors import UpstreamError
from adapters.http import ClientFactory, ClientSettings
from adapters.onestop.soap import (
    OPERATIONS,
    REFERENCE_OPERATIONS,
    SoapMapping,
    WsdlLimits,
    WsdlLoader,
    build_description,
    element_paths,
    fetch_wsdl_documents,
    message_type,
    reference_document,
    select_port,
    soap_version_of,
)

__all__ = ["REQUIRED_INPUT", "BindingInfo", "WsdlCheck", "check_wsdl"]

#: Per operation, the input elements (reference names, paths under the input element) the gateway must send.
REQUIRED_INPUT: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "deliver": (("KhoaYeuCau",), ("HoSo",), ("HoSo", "MaHoSo"), ("HoSo", "MaTTHC")),
    "status": (("MaHoSo",),),
    "supplement": (("KhoaYeuCau",), ("MaHoSo",), ("ThanhPhanHoSo",), ("ThanhPhanHoSo", "MaThanhPhan")),
    "withdraw": (("KhoaYeuCau",), ("MaHoSo",)),
}


@dataclass(frozen=True)
class BindingInfo:
    """One binding of the description (and the port using it, if any)."""

    name: str
    soap_version: str | None  # "1.1", "1.2", or None (HTTP bindings)
    style: str | None  # "document" or "rpc"
    operations: tuple[str, ...]
    port: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class WsdlCheck:
    """The outcome of :func:`check_wsdl`; ``message`` is one line, for an operator."""

    url: str
    ok: bool
    message: str
    problems: tuple[str, ...] = ()
    soap_versions: tuple[str, ...] = ()
    bindings: tuple[BindingInfo, ...] = ()
    port: str | None = None
    address: str | None = None
    operations: Mapping[str, str] = field(default_factory=dict)  # ours → their operation found
    documents: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # the repairs made to load the description

    def __str__(self) -> str:
        return self.message


def _failed(url: str, message: str, **extra: Any) -> WsdlCheck:
    return WsdlCheck(url=url, ok=False, message=message, problems=(message,), **extra)


def _reference_paths(document: Any) -> dict[str, frozenset[tuple[str, ...]]]:
    """Per operation, every input element path of the reference service (what the gateway knows how to fill)."""
    binding = select_port(document, soap_version="1.1").binding
    paths = {}
    for operation, name in REFERENCE_OPERATIONS.items():
        paths[operation] = frozenset(element_paths(message_type(binding._operations[name].input)))
    return paths


def _display(path: tuple[str, ...]) -> str:
    return "/".join(path)


def _bindings(document: Any) -> tuple[BindingInfo, ...]:
    used: dict[Any, Any] = {}
    for service in document.services.values():
        for port in service.ports.values():
            if getattr(port, "binding", None) is not None:
                used.setdefault(port.binding, port)
    infos = []
    everywhere = {  # the bindings of every document of the description, imported ones included
        qname: binding
        for definition in getattr(document, "_definitions", {}).values()
        for qname, binding in definition.bindings.items()
    } or dict(document.bindings)
    for qname, binding in everywhere.items():
        port = used.get(binding)
        operations = tuple(sorted(getattr(binding, "_operations", {})))
        infos.append(
            BindingInfo(
                name=str(qname).rsplit("}", 1)[-1],
                soap_version=soap_version_of(binding),
                style=getattr(binding, "default_style", None),
                operations=operations,
                port=port.name if port is not None else None,
                address=(port.binding_options or {}).get("address") if port is not None else None,
            )
        )
    return tuple(infos)


def _input_problems(
    operation: str, name: str, zeep_operation: Any, mapping: SoapMapping, known: frozenset[tuple[str, ...]]
) -> list[str]:
    """What makes an operation's input incompatible with what the gateway sends (``known``: the reference's paths)."""
    theirs = element_paths(message_type(zeep_operation.input))
    problems = []
    for path in REQUIRED_INPUT[operation]:
        mapped = tuple(mapping.name(part) for part in path)
        if mapped not in theirs:
            problems.append(f"{name} ({operation}) input lacks element {_display(mapped)}")
    for path, required in theirs.items():
        if not required:
            continue
        ours = tuple(mapping.reference_name(part) for part in path)
        parent_known = all(ours[:depth] in known for depth in range(1, len(ours)))
        if parent_known and ours not in known:
            problems.append(
                f"{name} ({operation}) input requires element {_display(path)}, which the gateway cannot fill"
            )
    return problems


async def check_wsdl(
    url: str,
    *,
    factory: ClientFactory,
    settings: ClientSettings,
    mapping: Mapping[str, Any] | None = None,
    auth: httpx.Auth | None = None,
    limits: WsdlLimits | None = None,
    upstream: str = "wsdl-check",
    wsdl_loader: WsdlLoader | None = None,
) -> WsdlCheck:
    """Load the WSDL at ``url`` (through ``factory`` with ``settings``) and check it against the reference service.

    ``mapping`` is the registration's (operation and element names, ``soap_version``, ``port``). The description at
    ``url`` is always fetched and parsed anew; ``wsdl_loader`` (the application's, when given) provides the parsed
    reference description. Never raises for a bad description or an unreachable one: the answer says what is wrong,
    in one line.
    """
    try:
        parsed_mapping = SoapMapping.parse(mapping)
    except ValueError as exc:
        return _failed(url, f"invalid mapping: {exc}")
    try:
        async with factory.client(upstream, settings, auth=auth) as http:
            fetched = await fetch_wsdl_documents(url, http, upstream=upstream, limits=limits)
        built = await asyncio.wait_for(
            asyncio.to_thread(build_description, fetched), timeout=(limits or WsdlLimits()).load_timeout_seconds
        )
    except UpstreamError as exc:
        return _failed(url, f"cannot load the WSDL: {exc.message}")
    except TimeoutError:
        return _failed(url, "cannot load the WSDL: parsing it took longer than the limit")
    except ValueError as exc:  # a URL httpx or the fetcher refuses
        return _failed(url, f"cannot load the WSDL: {exc}")
    document = built.document

    bindings = _bindings(document)
    versions = tuple(sorted({info.soap_version for info in bindings if info.soap_version}))
    common: dict[str, Any] = {
        "bindings": bindings,
        "soap_versions": versions,
        "documents": tuple(fetched.documents),
        "warnings": built.warnings,
    }
    try:
        port = select_port(document, soap_version=parsed_mapping.soap_version, port=parsed_mapping.port)
    except UpstreamError as exc:
        return _failed(url, exc.message, **common)
    address = (port.binding_options or {}).get("address")
    available = port.binding._operations
    reference = wsdl_loader.reference_document() if wsdl_loader is not None else reference_document()
    known = _reference_paths(reference)
    problems: list[str] = []
    found: dict[str, str] = {}
    for operation in OPERATIONS:
        name = parsed_mapping.operation(operation)
        zeep_operation = available.get(name)
        if zeep_operation is None:
            problems.append(f"operation {name} ({operation}) not found in port {port.name}")
            continue
        found[operation] = name
        problems.extend(_input_problems(operation, name, zeep_operation, parsed_mapping, known[operation]))
    if problems and len(found) < len(OPERATIONS):
        problems.append(f"the port has: {', '.join(sorted(available)) or 'no operations'}")
    common.update(port=port.name, address=address, operations=found)
    if problems:
        return WsdlCheck(url=url, ok=False, message="; ".join(problems), problems=tuple(problems), **common)
    version = soap_version_of(port.binding)
    message = (
        f"OK: port {port.name} (SOAP {version}, {port.binding.default_style}) has "
        f"{', '.join(found[op] for op in OPERATIONS)}; SOAP versions: {', '.join(versions)}; "
        f"{len(fetched.documents)} document(s)"
        + (f"; {len(built.warnings)} warning(s): {'; '.join(built.warnings)}" if built.warnings else "")
    )
    return WsdlCheck(url=url, ok=True, message=message, **common)
