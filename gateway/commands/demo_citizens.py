"""The citizens' channels in ``dvc-gateway demo``: the applicant rates the returned dossier, and a citizen's question
goes to the simulated agency, is answered there and relayed to the portal.

- The applicant rates the dossier through the portal API (``POST /api/v1/dossiers/{code}/ratings``); the outbox
  sends the rating to the national portal simulator (``DanhGiaHaiLongMC``), which then holds it.
- A citizen asks the competent agency a question (``POST /api/v1/questions``); the outbox posts it to the simulated
  REST agency (``POST {endpoint}/questions``); the agency's system answers it with its token
  (``POST /api/v1/agencies/{agency}/questions/{id}/answer``); the outbox relays the answer to the portal's webhook,
  here a small receiver (:func:`portal_hook_app`) that keeps what it is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from rich.status import Status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .demo_story import AGENCY, PROCEDURE, DemoError, _expect, _until, _Walk

__all__ = ["ANSWER", "QUESTION", "SCORES", "play_citizens", "portal_hook_app"]

#: The applicant's rating of the returned dossier (criterion -> 1..5).
SCORES = {"access": 5, "procedure": 4, "staff": 5, "timeliness": 4, "result": 5}
QUESTION = "Xây nhà 3 tầng có cần giấy phép xây dựng không?"
ANSWER = "Có, cần giấy phép xây dựng."


def portal_hook_app() -> Starlette:
    """The provincial portal's webhook: ``POST /hooks`` keeps each JSON body, ``GET /_sim/hooks`` lists them."""
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.json()
        if isinstance(body, dict):
            received.append(body)
        return JSONResponse({"ok": True})

    async def listed(_request: Request) -> JSONResponse:
        return JSONResponse(received)

    return Starlette(routes=[Route("/hooks", hook, methods=["POST"]), Route("/_sim/hooks", listed, methods=["GET"])])


async def play_citizens(
    clients: dict[str, httpx.AsyncClient],
    tokens: dict[str, str],
    status: Status,
    done: Callable[[str], None],
    code: str,
) -> None:
    """Rate the returned dossier ``code``, and ask, answer and relay a question."""
    walk = _Walk(clients, tokens, status, done)
    await _rate(walk, code)
    await _ask_and_answer(walk)


async def _rate(walk: _Walk, code: str) -> None:
    walk.status.update("The applicant rates the service…")
    rating = _expect(
        await walk.gateway.post(
            f"/api/v1/dossiers/{code}/ratings", json={"scores": SCORES, "comment": "Nhanh"}, headers=walk.portal
        ),
        201,
        "the rating",
    )
    held: dict[str, Any] = {}

    async def synced() -> bool:
        nonlocal held
        response = await walk.clients["national"].get(f"/_sim/dossiers/{code}")
        held = (response.json() if response.status_code == 200 else {}).get("rating") or {}
        return bool(held)

    await _until("the rating at the national portal", synced)
    walk.done(
        f"{code}: rated {rating['average']} / 5 by the applicant (national portal, DanhGiaHaiLongMC: "
        f"DiemTrungBinh {held.get('DiemTrungBinh')})"
    )


async def _ask_and_answer(walk: _Walk) -> None:
    walk.status.update("A citizen asks the agency a question…")
    body = {"procedure_code": PROCEDURE, "question": QUESTION, "reply_channel": "portal"}
    asked = _expect(await walk.gateway.post("/api/v1/questions", json=body, headers=walk.portal), 201, "the question")
    key = str(asked["id"])

    async def delivered() -> bool:
        return key in (await walk.agency_state()).get("questions", {})

    await _until("the question's delivery to the agency", delivered)
    walk.done(f"question {key} ({asked['route']}) delivered to the agency's system, answer due {asked['answer_by']}")
    clerk = {"Authorization": f"Bearer {walk.tokens['agency']}"}
    answer = {"answer": ANSWER, "answered_by": "Phòng Quản lý xây dựng"}
    path = f"/api/v1/agencies/{AGENCY}/questions/{key}/answer"
    _expect(await walk.gateway.post(path, json=answer, headers=clerk), 200, "the answer")
    relayed: dict[str, Any] = {}

    async def at_portal() -> bool:
        nonlocal relayed
        hooks = _expect_list(await walk.clients["portal"].get("/_sim/hooks"))
        relayed = next((h for h in hooks if h.get("type") == "question_answered"), {})
        return bool(relayed)

    await _until("the answer at the portal's webhook", at_portal)
    walk.done(f"question {key} answered by the agency; at the portal: {relayed['question']['answer']}")


def _expect_list(response: httpx.Response) -> list[dict[str, Any]]:
    body = response.json() if response.status_code == 200 else None
    if not isinstance(body, list):
        raise DemoError(f"the portal's webhook receiver: HTTP {response.status_code}")
    return [item for item in body if isinstance(item, dict)]
