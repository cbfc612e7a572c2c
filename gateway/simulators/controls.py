"""What the simulators' ``/_sim`` controls share: reading a JSON object, changing the faults, injecting an event."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, fields
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

__all__ = ["apply_faults", "checked_value", "inject_event", "json_object"]


class _Faults(Protocol):
    def update(self, changes: dict[str, Any]) -> None: ...


def checked_value(faults: Any, name: str, value: Any) -> Any:
    """``value`` for the field ``name`` of the dataclass ``faults``: a known field, of the field's type (an int is
    taken for a float), never negative; :class:`ValueError` otherwise."""
    expected = {f.name: type(getattr(faults, f.name)) for f in fields(faults)}.get(name)
    if expected is None:
        raise ValueError(f"unknown fault {name!r}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected or (isinstance(value, int | float) and value < 0):
        raise ValueError(f"{name} must be a non-negative {expected.__name__}")
    return value


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` when empty); :class:`ValueError` for anything else."""
    value = json.loads(await request.body() or b"{}")
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


async def apply_faults(request: Request, sim: Any, fresh: Callable[[], _Faults]) -> Response:
    """``POST /_sim/faults``: apply the body's changes to ``sim.faults`` (``{"reset": true}`` starts again from
    ``fresh()``); answers the faults now in force, or 400 ``invalid_faults``."""
    try:
        changes = await json_object(request)
        if changes.pop("reset", False):
            sim.faults = fresh()
        sim.faults.update(changes)
    except ValueError as exc:
        return JSONResponse({"error": "invalid_faults", "detail": str(exc)}, status_code=400)
    return JSONResponse(asdict(sim.faults))


async def inject_event(
    request: Request, handle: Callable[[str, dict[str, Any]], Awaitable[tuple[int, Any]]]
) -> Response:
    """``POST /_sim/dossiers/{code}/events``: the clerk's event in the body, handled by ``handle(code, payload)``."""
    try:
        payload = await json_object(request)
    except ValueError:
        return JSONResponse({"error": "invalid_json"}, status_code=400)
    status, body = await handle(request.path_params["code"], payload)
    return JSONResponse(body, status_code=status)
