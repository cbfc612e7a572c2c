"""Test support: an ASGI app served by real uvicorn on 127.0.0.1 in a thread, and tiny admin helpers."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 (ephemeral port) in a thread, stopped cleanly."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="critical", access_log=False, timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)
        self.base_url = ""

    @property
    def app(self) -> Any:
        return self.server.config.app

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


async def admin_post(base_url: str, path: str, body: Any = None) -> Any:
    """POST a JSON body to a simulator's ``/_sim`` endpoint; the JSON answer (raises on an error status)."""
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as admin:
        response = await admin.post(path, json=body if body is not None else {})
        response.raise_for_status()
        return response.json()


async def admin_get(base_url: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as admin:
        response = await admin.get(path, params=params or None)
        response.raise_for_status()
        return response
