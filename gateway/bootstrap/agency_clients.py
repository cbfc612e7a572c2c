"""The one-stop clients of the registered agencies, built and cached by the composition root.

One client per agency, built from its registration document by the protocol it speaks (REST over httpx, SOAP over
zeep) through the process's one client factory (address policy, timeouts, recording); rebuilt when the registration
changes, the replaced client closed once no delivery or poll holds it. Secrets are resolved when a request needs
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.errors import AuthError, PermanentError
from adapters.http import ClientFactory
from adapters.netguard import AddressPolicy
from adapters.onestop.port import OneStopClient
from adapters.onestop.rest import RestOneStopClient
from adapters.onestop.soap import SoapOneStopClient, WsdlLimits, WsdlLoader
from gateway.config import ConfigError, resolve_secret
from gateway.sections import RegistrySection

__all__ = ["AgencyClientCache", "wsdl_limits"]

log = logging.getLogger("gateway.dispatch")


def _secret(reference: str) -> str:
    """A secret reference resolved now (a missing one is an operator's problem: a permanent failure)."""
    try:
        value = resolve_secret(reference, key="secret")
    except ConfigError as exc:
        raise AuthError(f"credentials unavailable: {exc}") from None
    return value or ""


def wsdl_limits(registry: RegistrySection) -> WsdlLimits:
    """The limits on loading a service description, from ``[registry] wsdl_*``."""
    return WsdlLimits(
        max_document_bytes=registry.wsdl_max_document_bytes,
        max_documents=registry.wsdl_max_documents,
        max_total_bytes=registry.wsdl_max_total_bytes,
        load_timeout_seconds=float(registry.wsdl_load_timeout_seconds),
    )


@dataclass
class _Entry:
    document: dict[str, Any]
    client: RestOneStopClient | SoapOneStopClient
    users: int = 0
    retired: bool = False


class AgencyClientCache:
    """Implements :class:`gateway.flows.agency.ports.AgencyClients`."""

    def __init__(
        self,
        factory: ClientFactory,
        *,
        address_policy: AddressPolicy,
        wsdl_loader: WsdlLoader,
        wsdl_cache_dir: Path | None = None,
        wsdl_limits: WsdlLimits | None = None,
    ) -> None:
        self.factory = factory
        self.address_policy = address_policy
        self.wsdl_loader = wsdl_loader
        self.wsdl_cache_dir = wsdl_cache_dir
        self.wsdl_limits = wsdl_limits
        self._entries: dict[str, _Entry] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _build(self, agency_code: str, document: dict[str, Any]) -> RestOneStopClient | SoapOneStopClient:
        try:
            if document.get("protocol") == "soap":
                return SoapOneStopClient.from_document(
                    document,
                    resolve_secret=_secret,
                    factory=self.factory,
                    cache_dir=self.wsdl_cache_dir,
                    limits=self.wsdl_limits,
                    address_policy=self.address_policy,
                    wsdl_loader=self.wsdl_loader,
                )
            return RestOneStopClient.from_document(
                document, resolve_secret=_secret, factory=self.factory, address_policy=self.address_policy
            )
        except ValueError as exc:
            upstream = f"agency:{agency_code}"
            raise PermanentError(f"cannot reach the agency as registered: {exc}", upstream=upstream) from None

    def _entry(self, agency_code: str, document: Mapping[str, Any]) -> _Entry:
        """The cached client of ``agency_code``, rebuilt when its registration document changed."""
        entry = self._entries.get(agency_code)
        if entry is not None and entry.document == document:
            return entry
        fresh = _Entry(document=dict(document), client=self._build(agency_code, dict(document)))
        self._entries[agency_code] = fresh
        if entry is not None:
            log.info("agency registration changed: client rebuilt", extra={"agency_code": agency_code})
            entry.retired = True
            if entry.users == 0:
                self._close_later(entry)
        return fresh

    @contextlib.asynccontextmanager
    async def use(self, agency_code: str, document: Mapping[str, Any]) -> AsyncIterator[OneStopClient]:
        entry = self._entry(agency_code, document)
        entry.users += 1
        try:
            yield entry.client
        finally:
            entry.users -= 1
            if entry.retired and entry.users == 0:
                await entry.client.aclose()

    def _close_later(self, entry: _Entry) -> None:
        task = asyncio.get_running_loop().create_task(entry.client.aclose())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await entry.client.aclose()
        for task in list(self._background):
            await task
