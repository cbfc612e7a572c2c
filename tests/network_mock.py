"""respx for the gateway's own transport: routes answer requests at :class:`~adapters.connections.GuardedTransport`.

respx patches httpcore by default, which the gateway's clients no longer reach: their network end is aiohttp's. The
``network`` mocker patches both, so one ``respx.mock()`` answers the gateway's clients (below their transport chain:
size cap, recording and replay links still see the exchange) and plain httpx clients alike. Importing this module
makes it respx's default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import respx.mocks
from respx.mocks import HTTPCoreMocker


class NetworkMocker(HTTPCoreMocker):
    name = "network"
    targets: ClassVar[list[str]] = [*HTTPCoreMocker.targets, "adapters.connections.GuardedTransport"]
    target_methods: ClassVar[list[str]] = ["handle_request", "handle_async_request"]

    @classmethod
    async def prepare_async_request(cls, httpx_request: httpx.Request, **kwargs: Any) -> Any:
        if isinstance(kwargs["request"], httpx.Request):
            await httpx_request.aread()
            return httpx_request, kwargs
        return await super().prepare_async_request(httpx_request, **kwargs)

    @classmethod
    def to_httpx_request(cls, **kwargs: Any) -> httpx.Request:
        request = kwargs["request"]
        return request if isinstance(request, httpx.Request) else super().to_httpx_request(**kwargs)

    @classmethod
    async def from_async_httpx_response(cls, httpx_response: httpx.Response, target: Any, **kwargs: Any) -> Any:
        if isinstance(kwargs["request"], httpx.Request):
            return httpx_response
        return await super().from_async_httpx_response(httpx_response, target, **kwargs)


respx.mocks.DEFAULT_MOCKER = NetworkMocker.name
