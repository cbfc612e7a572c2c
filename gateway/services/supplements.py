"""Supplements: the applicant adds or replaces components after ``supplement_requested``, and the dossier resumes.

New revisions of the components are stored (the previous revision kept, no longer current); the dossier goes back
to the status it had before the wait; the agency is sent an ``agency.supplement``. Repeats of an
``Idempotency-Key`` get the first answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway import audit
from gateway.auth import Principal
from gateway.domain.calendar import OfficeCalendar
from gateway.domain.status import Status, check_transition, resume_status
from gateway.errors import Conflict, Invalid
from gateway.services.agency_outbox import enqueue_supplement
from gateway.services.changes import find_dossier, procedure_of, record_change, resumable_status
from gateway.services.context import Context
from gateway.services.files import PreparedFile, prepare_files, verify_files
from gateway.services.idempotency import Answer, DossierRequest, answered_before, change_dossier
from gateway.services.intake import (
    ComponentIn,
    check_component_codes,
    component_rows,
    signature_warnings,
    warnings_note,
)
from gateway.services.signers import check_signers
from gateway.store.models import Component, Dossier
from gateway.unit_of_work import UnitOfWork
from gateway.validation import parse_model

__all__ = ["Supplement", "add_supplement", "current_components", "supplement"]


class _Revision(Protocol):
    @property
    def code(self) -> str: ...

    @property
    def current(self) -> bool: ...


RevisionT = TypeVar("RevisionT", bound=_Revision)


class Supplement(BaseModel):
    """Components added or replaced after ``supplement_requested`` (the same shape as at submission)."""

    model_config = ConfigDict(extra="forbid")

    components: Annotated[list[ComponentIn], Field(min_length=1)]
    note: Annotated[str, Field(max_length=4000)] | None = None


def current_components(dossier: Dossier) -> list[Component]:
    """The current revision of each component, in the order the codes were first submitted."""
    return current_of(dossier.components)


def current_of(components: Sequence[RevisionT]) -> list[RevisionT]:
    """Of a dossier's ``components`` (every revision, oldest first: objects or rows), the current revision of each,
    in the order the codes were first submitted."""
    first: dict[str, int] = {}
    for index, component in enumerate(components):
        first.setdefault(component.code, index)
    return sorted((c for c in components if c.current), key=lambda c: first[c.code])


def _require_waiting(dossier: Dossier) -> None:
    if dossier.status != Status.SUPPLEMENT_REQUESTED:
        raise Conflict(
            f"dossier {dossier.code} is {dossier.status}: supplements are accepted only after supplement_requested"
        )


def _new_revisions(dossier: Dossier, files: Sequence[PreparedFile]) -> dict[str, int]:
    revisions: dict[str, int] = {}
    for f in files:
        assert f.code is not None
        previous = [c for c in dossier.components if c.code == f.code]
        for component in previous:
            component.current = False
        revisions[f.code] = max((c.revision for c in previous), default=0) + 1
    return revisions


def add_supplement(
    uow: UnitOfWork,
    dossier: Dossier,
    files: Sequence[PreparedFile],
    *,
    actor: Principal,
    calendar: OfficeCalendar,
    now: datetime,
    note: str | None = None,
    signer_policy: str = "warn",
) -> None:
    """Store the applicant's supplement (only after ``supplement_requested``) and resume the dossier; each validly
    signed file is checked against the dossier's applicant (``signer_policy``: ``warn`` or ``require``)."""
    session = uow.session
    _require_waiting(dossier)
    spec = procedure_of(session, dossier)
    errors = check_component_codes(spec, [(f.field, f.code or "") for f in files])
    if errors:
        raise Invalid(errors)
    resumed = resume_status(resumable_status(dossier))
    check_transition(Status(dossier.status), resumed)
    check_signers(files, dossier.applicant or {}, signer_policy)
    revisions = _new_revisions(dossier, files)
    dossier.components.extend(component_rows(session, spec, files, now=now, revisions=revisions))
    dossier.originals_check_required = any(c.originals_check_required for c in current_components(dossier))

    number = 1 + sum(1 for entry in dossier.history if (entry.details or {}).get("supplement"))
    codes = [f.code for f in files if f.code]
    warnings = signature_warnings(spec, files)
    text = f"Supplement received: {', '.join(codes)}"
    if note:
        text += f". {note}"
    if warnings:
        text += f". {warnings_note(warnings)}"
    details: dict[str, Any] = {"supplement": number, "components": codes, "from": Status.SUPPLEMENT_REQUESTED.value}
    if warnings:
        details["signature_warnings"] = warnings
    entry = record_change(
        uow, dossier, status=resumed, at=now, actor=actor.name, note=text, details=details, calendar=calendar, now=now
    )
    enqueue_supplement(session, dossier, codes, number)
    audit.append(
        session,
        actor.name,
        "dossier.supplemented",
        dossier.code,
        {
            "supplement": number,
            "components": [{"code": f.code, "sha256": f.sha256, "verdict": f.verdict} for f in files],
            "to": resumed.value,
            "history_id": entry.id,
        },
        at=now,
    )


async def supplement(ctx: Context, request: DossierRequest) -> Answer:
    """``POST /api/v1/dossiers/{code}/supplements``: checked, files prepared and verified, then one unit of work."""
    context = await request.idempotency()
    earlier = await answered_before(ctx.db, context)
    if earlier is not None:
        return earlier
    body = parse_model(Supplement, request.document)
    await ctx.db.run(lambda session: _require_waiting(find_dossier(session, request.code)))
    items = [(f"components[{i}]", c.code, c) for i, c in enumerate(body.components)]
    files, errors = await prepare_files(items, max_bytes=ctx.max_file_bytes)
    if errors:
        raise Invalid(errors)
    await verify_files(ctx.verifier, files)

    def change(uow: UnitOfWork, dossier: Dossier) -> None:
        actor, now = request.principal, request.now
        add_supplement(
            uow,
            dossier,
            files,
            actor=actor,
            calendar=ctx.calendar,
            now=now,
            note=body.note,
            signer_policy=ctx.signer_must_match_applicant,
        )

    return await change_dossier(ctx, context, request, change, short=not files)
