"""Load any service description and say what it offers: services, ports, SOAP versions, operations, repairs made.

:func:`inspect_wsdl` loads a description as the gateway's clients do (every document fetched through the given
client: address policy, size, count and time limits, hardened parsing, the well-known schemas from the shipped
copies, the lenient second attempt) and never raises for a bad or unreachable description: its :class:`Inspection`
says what is wrong in one line. :func:`describe` reports the bindings and ports of every document of a description,
imported ones included. :func:`local_files_client` serves a description kept in local files the same way.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapters.errors import UpstreamError
from adapters.onestop.soap import REFERENCE_OPERATIONS, WsdlLimits, build_description, fetch_wsdl_documents
from adapters.onestop.soap.explain import explain
from adapters.onestop.soap.schema import soap_version_of

__all__ = [
    "ABSOLUTE_PATH",
    "LOCAL_BASE",
    "LOCAL_ROOT",
    "NOT_LOCAL",
    "NO_SUCH_FILE",
    "Inspection",
    "PortInfo",
    "ServiceInfo",
    "describe",
    "inspect_wsdl",
    "local_files_client",
    "local_url",
]

#: The base URL local files are served under (see :func:`local_files_client`).
LOCAL_BASE = "https://local-files.invalid/"


@dataclass(frozen=True)
class PortInfo:
    name: str
    binding: str
    soap_version: str | None
    style: str | None
    address: str | None
    operations: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "binding": self.binding,
            "soap_version": self.soap_version,
            "style": self.style,
            "address": self.address,
            "operations": list(self.operations),
        }


@dataclass(frozen=True)
class ServiceInfo:
    name: str
    ports: tuple[PortInfo, ...]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "ports": [port.as_json() for port in self.ports]}


@dataclass(frozen=True)
class Inspection:
    """What loading one description found (``error``: why it did not load, one line)."""

    source: str
    loaded: bool
    services: tuple[ServiceInfo, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None
    documents: tuple[str, ...] = ()
    document: Any = field(default=None, repr=False, compare=False)

    @property
    def soap_versions(self) -> tuple[str, ...]:
        versions = {port.soap_version for service in self.services for port in service.ports}
        return tuple(sorted(version for version in versions if version))

    def reference_operations(self) -> dict[str, bool]:
        """Per reference operation (``TiepNhanHoSo``…), whether some SOAP port offers it under that name."""
        offered = {
            op for service in self.services for port in service.ports if port.soap_version for op in port.operations
        }
        return {name: name in offered for name in REFERENCE_OPERATIONS.values()}

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "services": [service.as_json() for service in self.services],
            "warnings": list(self.warnings),
            "error": self.error,
        }


_NO_SERVICE = (
    "the description defines no wsdl:service, so no address to call (an abstract part another description imports?)"
)


def _local(name: Any) -> str:
    return str(name).rsplit("}", 1)[-1]


def describe(document: Any) -> tuple[ServiceInfo, ...]:
    """The services of every document of ``document`` (a zeep document), imported ones included, and their ports."""
    definitions = list(getattr(document, "_definitions", {}).values())
    services: dict[str, ServiceInfo] = {}
    for definition in definitions:
        for service in definition.services.values():
            ports = []
            for port in service.ports.values():
                binding = getattr(port, "binding", None)
                if binding is None:
                    continue
                ports.append(
                    PortInfo(
                        name=port.name,
                        binding=_local(binding.name),
                        soap_version=soap_version_of(binding),
                        style=getattr(binding, "default_style", None),
                        address=(port.binding_options or {}).get("address"),
                        operations=tuple(sorted(getattr(binding, "_operations", {}))),
                    )
                )
            services.setdefault(service.name, ServiceInfo(service.name, tuple(ports)))
    return tuple(services.values())


async def _load(url: str, http: httpx.AsyncClient, limits: WsdlLimits, upstream: str) -> Inspection:
    fetched = await fetch_wsdl_documents(url, http, upstream=upstream, limits=limits)
    built = await asyncio.to_thread(build_description, fetched)
    services = describe(built.document)
    warnings = built.warnings
    if not services:
        warnings += (_NO_SERVICE,)
    return Inspection(
        source=url,
        loaded=True,
        services=services,
        warnings=warnings,
        documents=tuple(fetched.documents),
        document=built.document,
    )


async def inspect_wsdl(
    url: str, http: httpx.AsyncClient, *, limits: WsdlLimits | None = None, upstream: str = "wsdl-check"
) -> Inspection:
    """Load the description at ``url`` through ``http`` (its address policy and timeouts apply to every document)
    within ``limits``; never raises for the description's faults (the answer's ``error`` says what is wrong)."""
    limits = limits or WsdlLimits()
    loop = asyncio.get_running_loop()
    started = loop.time()
    too_long = f"loading took longer than {limits.load_timeout_seconds:g} seconds (the limit)"
    try:
        found = await asyncio.wait_for(_load(url, http, limits, upstream), timeout=limits.load_timeout_seconds)
    except UpstreamError as exc:
        return Inspection(source=url, loaded=False, error=exc.message)
    except TimeoutError:
        return Inspection(source=url, loaded=False, error=too_long)
    except (ValueError, httpx.HTTPError) as exc:  # a URL httpx or the fetcher refuses
        return Inspection(source=url, loaded=False, error=f"cannot fetch it: {exc}")
    except Exception as exc:  # noqa: BLE001 - the contract: one line, whatever the description holds
        return Inspection(source=url, loaded=False, error=f"the service description is invalid: {explain(exc, str)}")
    if loop.time() - started > limits.load_timeout_seconds:  # done just as the limit passed: over it all the same
        return Inspection(source=url, loaded=False, error=too_long)
    return found


#: Local files are served under this first path segment: a reference by absolute path (``/etc/x.xsd``), which
#: resolves to the same host without it, is told apart from a relative one.
LOCAL_ROOT = LOCAL_BASE + "~local~/"
#: The statuses :func:`local_files_client` answers what it does not serve with: another host or scheme, an absolute
#: path, a file that does not exist.
NOT_LOCAL, ABSOLUTE_PATH, NO_SUCH_FILE = 421, 403, 404


def local_url(path: str | Path) -> str:
    """The URL :func:`local_files_client` serves the file ``path`` at (its absolute path under :data:`LOCAL_ROOT`)."""
    return LOCAL_ROOT + urllib.parse.quote(str(Path(path).resolve()).lstrip("/"))


def local_files_client() -> httpx.AsyncClient:
    """A client serving local files at their :func:`local_url`, and nothing else.

    A description kept in files is loaded like one on a server: its relative imports are read from the files they
    name (each must be a WSDL or XML Schema document, as always); a reference by absolute path is refused
    (:data:`ABSOLUTE_PATH`), and so is any other absolute reference (another host: :data:`NOT_LOCAL`; ``file:``).
    """

    def serve(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if not url.startswith(LOCAL_BASE):
            return httpx.Response(NOT_LOCAL, text="only local files are read for a local description")
        if not url.startswith(LOCAL_ROOT):
            return httpx.Response(ABSOLUTE_PATH, text="a local description's imports must be relative")
        path = Path("/" + urllib.parse.unquote(url[len(LOCAL_ROOT) :].split("?", 1)[0]))
        if not path.is_file():
            return httpx.Response(NO_SUCH_FILE, text="no such file")
        return httpx.Response(200, content=path.read_bytes(), headers={"Content-Type": "application/xml"})

    return httpx.AsyncClient(transport=httpx.MockTransport(serve), timeout=10)
