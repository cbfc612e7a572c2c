"""A cassette directory served over HTTP as fake upstreams (``dvc-gateway replay serve DIR``).

Any method and path is answered from the recordings, matched as :mod:`gateway.recording.match` says but ignoring the
scheme and host (the client talks to this server, not to the recorded host). A request nothing answers gets
``501`` with ``X-Replay: miss`` and a JSON body whose ``detail`` names the closest recording and the first
difference; a recorded or injected failure (connection refused, timeout) gets ``502`` with ``X-Replay: failure``.

A replayed answer carries its recorded ``Date`` (the current time when it has none, and on a miss or a failure):
serve the app with the server's own ``Date`` header off (uvicorn's ``date_header=False``, as ``replay serve`` does),
or answers carry two.

The recorded headers are sent as recorded: a repeated one (two ``Set-Cookie``) stays two headers, and text outside
ASCII goes out as its UTF-8 bytes. HEAD, 1xx, 204 and 304 answers carry no body (a HEAD answer keeps its recorded
Content-Length). The live request's path is taken as it came (``raw_path``), so ``%2F`` is not read as ``/``.

A recorded 1xx answer (a WebSocket handshake's ``101 Switching Protocols``) cannot be replayed as an HTTP answer:
it gets ``501`` with ``X-Replay: unsupported`` and a one-line reason, and so does a live WebSocket handshake (the
frames a capture lists are not replayed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import replace
from email.utils import formatdate

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .bodies import bodiless
from .match import NoMatch
from .transport import FaultRule, RecordingSettings, Replayer, interim_reason

__all__ = ["create_replay_app"]

#: Request headers of the client that never take part in matching (they name this server, not the upstream).
_HOST_HEADERS = frozenset({"host", "content-length"})
#: Recorded response headers not sent as they are (the server frames the body it sends).
_FRAMING_HEADERS = frozenset({b"content-length", b"content-encoding", b"transfer-encoding", b"connection"})
#: An HTTP header name is a token (RFC 9110); a value has no control characters but tab.
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


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
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, send)
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
        live = httpx.Request(request.method, _live_url(request), headers=headers, content=body)
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
        if answer.status_code < 200:
            return _unsupported(f"{request.method} {request.url.path}: {interim_reason(answer.status_code)}")
        no_body = bodiless(request.method, answer.status_code)
        response = Response(b"" if no_body else answer.content, status_code=answer.status_code)
        if no_body:
            # Starlette counted the empty body. A HEAD answer keeps the recorded size of the resource; other bodiless
            # answers (304...) go without one, as the server cannot send a length it does not follow.
            response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-length"]
            length = answer.headers.get("content-length", "")
            if request.method == "HEAD" and length.isascii() and length.isdigit():
                response.raw_headers.append((b"content-length", length.encode("ascii")))
        for name, value in answer.headers.raw:
            lower = name.lower()
            if lower not in _FRAMING_HEADERS and _TOKEN.fullmatch(lower):
                response.raw_headers.append((lower, _CONTROL.sub(b" ", value)))
        response.raw_headers.append((b"x-replay", b"hit"))
        return response


def _unsupported(detail: str) -> Response:
    return JSONResponse(
        {"error": "unsupported", "detail": detail}, status_code=501, headers={"X-Replay": "unsupported"}
    )


async def _refuse_websocket(scope: Scope, send: Send) -> None:
    """A live WebSocket handshake: refused with 501 where the server can send an HTTP answer, else closed (403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    response = _unsupported(f"{scope.get('path', '/')}: WebSocket connections are not replayed")
    # The server closes the connection after a refused handshake: the client must not send another request on it.
    headers = [*response.raw_headers, (b"connection", b"close")]
    await send({"type": "websocket.http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": response.body})


def _live_url(request: Request) -> str:
    """The request's URL with its path as sent (``raw_path``: ``%2F`` stays ``%2F``, not a ``/``)."""
    raw_path = request.scope.get("raw_path")
    if not raw_path:
        return str(request.url)
    url = request.url
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    return f"{url.scheme}://{url.netloc}{target}"


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
