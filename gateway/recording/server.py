"""A cassette directory served over HTTP as fake upstreams (``dvc-gateway replay serve DIR``).

Any method and path is answered from the recordings, matched as :mod:`gateway.recording.match` says but ignoring the
scheme and host (the client talks to this server, not to the recorded host). A request nothing answers gets
``501`` with ``X-Replay: miss`` and a JSON body whose ``detail`` names the closest recording and the first
difference; a recorded or injected failure (connection refused, timeout) gets ``502`` with ``X-Replay: failure``.

A replayed answer carries its recorded ``Date`` (the current time when it has none, and on a miss or a failure):
serve the app with the server's own ``Date`` header off (uvicorn's ``date_header=False``, as ``replay serve`` does),
or answers carry two.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from email.utils import formatdate

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .match import NoMatch
from .transport import FaultRule, RecordingSettings, Replayer

__all__ = ["create_replay_app"]

#: Request headers of the client that never take part in matching (they name this server, not the upstream).
_HOST_HEADERS = frozenset({"host", "content-length"})


class _ReplayApp:
    def __init__(self, replayer: Replayer) -> None:
        self.replayer = replayer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._answer(request)
        if "date" not in response.headers:
            response.headers["Date"] = formatdate(usegmt=True)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOST_HEADERS]
        live = httpx.Request(request.method, str(request.url), headers=headers, content=body)
        try:
            answer = await self.replayer.answer(live)
        except NoMatch as exc:
            return JSONResponse(
                {"error": "no_match", "detail": str(exc)}, status_code=501, headers={"X-Replay": "miss"}
            )
        except httpx.TransportError as exc:
            # A recorded or injected connection failure: the client sees an error page it cannot mistake for data.
            return JSONResponse(
                {"error": "replayed_failure", "detail": str(exc)}, status_code=502, headers={"X-Replay": "failure"}
            )
        await answer.aread()
        headers_out = {
            k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "content-encoding")
        }
        headers_out["X-Replay"] = "hit"
        return Response(answer.content, status_code=answer.status_code, headers=headers_out)


def create_replay_app(
    directory: str | os.PathLike[str],
    settings: RecordingSettings | None = None,
    *,
    faults: Iterable[FaultRule] = (),
    latency: float | None = None,
) -> ASGIApp:
    """An ASGI app answering from the cassettes of ``directory`` (``latency``: factor on recorded latencies)."""
    settings = settings or RecordingSettings(mode="replay")
    if latency is not None:
        settings = replace(settings, replay_latency=latency)
    replayer = Replayer(directory, settings, faults=faults, ignore_host=True)
    app = _ReplayApp(replayer)
    return app
