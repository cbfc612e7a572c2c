"""Intake: a submitted dossier checked, coded, verified, stored and routed in one unit of work.

The steps:

1. **Shape** (:class:`Submission`, the body of ``docs/api.md``): unknown top-level fields are kept in
   ``Dossier.extra``; components and fees accept only their documented fields.
2. **Catalogue**: the procedure must be in the catalogue; the agency must be one of its competent agencies *and*
   registered with the gateway; every required component present, no unknown or repeated component code; fees as
   the catalogue says.
3. **Files** (:mod:`gateway.services.files`): strict base64, size limits, safe names, content types sniffed.
4. **Signatures**: every component verified *before* the write transaction opens. A component the catalogue says
   ``must_be_signed`` whose verdict is not ``valid`` is **kept** (refusing it would push the applicant back to
   paper): it requires the originals check like any unsigned file, and the ``submitted`` history entry says so.
5. **One unit of work**: blobs, the dossier code from the atomic daily sequence, the dossier with its components,
   fees and ``submitted`` entry, deadlines, the ``agency.deliver`` message, the flows' follow-ups (through the bus),
   the ``Idempotency-Key`` answer and an audit entry. Everything lands together or nothing does.

Personal data (the applicant) is never logged; audit entries carry codes, counts and digests only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from gateway import audit
from gateway.auth import Principal
from gateway.catalogue import ProcedureSpec, get_procedure
from gateway.domain.calendar import VIETNAM_TZ
from gateway.domain.codes import format_dossier_code
from gateway.domain.deadlines import compute_deadlines
from gateway.domain.status import Status
from gateway.errors import Invalid, Unavailable, problem
from gateway.registry import is_registered
from gateway.services.agency_outbox import enqueue_delivery
from gateway.services.changes import changed
from gateway.services.context import Context, Render
from gateway.services.files import FileIn, PreparedFile, prepare_files, store_blob, verify_files
from gateway.services.idempotency import Answer, IdempotencyContext, answered_before, run_idempotent
from gateway.services.signers import check_signers, mismatch_warnings
from gateway.store.models import Component, DaySequence, Dossier, Fee, HistoryEntry
from gateway.store.written import write_new
from gateway.unit_of_work import UnitOfWork
from gateway.validation import parse_model

__all__ = [
    "Applicant",
    "Code",
    "ComponentIn",
    "FeeIn",
    "Submission",
    "allocate_code",
    "check_component_codes",
    "component_rows",
    "signature_warnings",
    "submit",
    "warnings_note",
]

_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
Code = Annotated[StrictStr, Field(pattern=_CODE_PATTERN)]
Text = Annotated[StrictStr, Field(min_length=1, max_length=2000)]


class ComponentIn(FileIn):
    code: Code


class FeeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Annotated[StrictStr, Field(max_length=500)] | None = None
    amount: Annotated[StrictInt, Field(ge=0)]


class Applicant(BaseModel):
    """The applicant (personal data: stored, shown to the portal and the agency, never logged or looked up)."""

    model_config = ConfigDict(extra="allow")

    kind: Annotated[StrictStr, Field(min_length=1, max_length=32)] = "citizen"
    full_name: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    id_number: Annotated[StrictStr, Field(max_length=64)] | None = None
    phone: Annotated[StrictStr, Field(max_length=64)] | None = None
    email: Annotated[StrictStr, Field(max_length=320)] | None = None
    address: Annotated[StrictStr, Field(max_length=2000)] | None = None


class Submission(BaseModel):
    """``POST /api/v1/dossiers`` (``docs/api.md``). Unknown top-level fields are kept (``Dossier.extra``)."""

    model_config = ConfigDict(extra="allow")

    procedure_code: Code
    agency_code: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    channel: Literal["online", "in_person", "post"] = "online"
    applicant: Applicant
    summary: Text | None = None
    components: list[ComponentIn] = Field(default_factory=list)
    fees: list[FeeIn] | None = None
    return_method: Literal["in_person", "post", "online"] | None = None
    delivery_address: dict[str, Any] | None = None


def _next_code(insert: Any) -> Any:
    table = DaySequence.__table__
    statement = insert(table).on_conflict_do_update(
        index_elements=["agency_code", "day"], set_={"last": table.c.last + 1}
    )
    return statement.returning(table.c.last)


#: The day's counter created or incremented, per engine (built once; the values are bound at execution).
_NEXT_CODE = {"postgresql": _next_code(postgresql.insert), "sqlite": _next_code(sqlite.insert)}


def allocate_code(session: Session, agency_code: str, now: datetime) -> str:
    """The next dossier code of ``agency_code`` today (Asia/Ho_Chi_Minh), unique across processes.

    One statement, ``INSERT … ON CONFLICT DO UPDATE SET last = last + 1 RETURNING last``: it creates the day's
    counter or increments it under the row's write lock (PostgreSQL) or the database's (SQLite), so two transactions
    never get the same number, and a rolled-back one gives its number back.
    """
    day = now.astimezone(VIETNAM_TZ).strftime("%y%m%d")
    statement = _NEXT_CODE["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"]
    last = session.execute(statement, {"agency_code": agency_code, "day": day, "last": 1}).scalar_one()
    try:
        return format_dossier_code(agency_code, now, last)
    except ValueError as exc:
        raise Unavailable(f"no dossier code left for agency {agency_code} today: {exc}") from None


def check_catalogue(session: Session, sub: Submission) -> tuple[ProcedureSpec | None, list[dict[str, str]]]:
    """The procedure and every problem of the submission against the catalogue and the registry."""
    errors: list[dict[str, str]] = []
    spec = get_procedure(session, sub.procedure_code)
    if spec is None:
        errors.append(problem("procedure_code", f"unknown procedure {sub.procedure_code}"))
        return None, errors
    if sub.agency_code not in spec.agencies:
        competent = ", ".join(spec.agencies)
        errors.append(
            problem(
                "agency_code",
                f"agency {sub.agency_code} is not competent for procedure {spec.code} (competent: {competent})",
            )
        )
    elif not is_registered(session, sub.agency_code):
        errors.append(problem("agency_code", f"agency {sub.agency_code} is not registered with the gateway"))
    errors += check_component_codes(spec, [(f"components[{i}]", c.code) for i, c in enumerate(sub.components)])
    given = {c.code for c in sub.components}
    for component in spec.components:
        if component.required and component.code not in given:
            errors.append(problem("components", f"required component {component.code} ({component.name}) is missing"))
    errors += _check_fees(spec, sub.fees)
    if sub.return_method == "post" and not sub.delivery_address:
        errors.append(problem("delivery_address", "required when return_method is post"))
    return spec, errors


def check_component_codes(spec: ProcedureSpec, items: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Unknown and repeated component codes among ``(field path, code)`` items."""
    errors = []
    known = {c.code for c in spec.components}
    seen: set[str] = set()
    for field_name, code in items:
        if code not in known:
            listed = ", ".join(sorted(known)) or "none"
            errors.append(
                problem(f"{field_name}.code", f"unknown component {code} for procedure {spec.code} (known: {listed})")
            )
        elif code in seen:
            errors.append(problem(f"{field_name}.code", f"component {code} is given more than once"))
        seen.add(code)
    return errors


def _check_fees(spec: ProcedureSpec, fees: list[FeeIn] | None) -> list[dict[str, str]]:
    """Fees must be the catalogue's: each given fee a catalogue fee with its amount (whole VND), none repeated, and
    every fee with a non-zero amount present. Omitted (``fees`` absent or null), the catalogue's fees apply."""
    if fees is None:
        return []
    errors = []
    catalogue = {fee.code: fee for fee in spec.fees}
    seen: set[str] = set()
    for index, fee in enumerate(fees):
        expected = catalogue.get(fee.code)
        if expected is None:
            errors.append(problem(f"fees[{index}].code", f"unknown fee {fee.code} for procedure {spec.code}"))
        elif fee.code in seen:
            errors.append(problem(f"fees[{index}].code", f"fee {fee.code} is given more than once"))
        elif fee.amount != expected.amount:
            errors.append(
                problem(
                    f"fees[{index}].amount", f"must be {expected.amount} VND as the catalogue says, got {fee.amount}"
                )
            )
        seen.add(fee.code)
    for code, expected in catalogue.items():
        if expected.amount > 0 and code not in seen:
            errors.append(problem("fees", f"fee {code} ({expected.name}, {expected.amount} VND) is missing"))
    return errors


def signature_warnings(spec: ProcedureSpec, files: Sequence[PreparedFile]) -> list[dict[str, str]]:
    """Components the catalogue says must be signed whose signature is not valid, and components whose valid
    signature is not the applicant's."""
    must = {c.code for c in spec.components if c.must_be_signed}
    unsigned = [{"component": f.code, "verdict": f.verdict} for f in files if f.code in must and f.verdict != "valid"]
    return unsigned + mismatch_warnings(files)


def warnings_note(warnings: Sequence[dict[str, str]]) -> str | None:
    if not warnings:
        return None
    parts = [
        f"{w['component']} is signed by someone other than the applicant"
        if w["verdict"] == "signer_not_applicant"
        else f"{w['component']} must be digitally signed (signature: {w['verdict']})"
        for w in warnings
    ]
    return "Originals check required: " + "; ".join(parts)


def component_rows(
    session: Session, spec: ProcedureSpec, files: Sequence[PreparedFile], *, now: datetime, revisions: dict[str, int]
) -> list[Component]:
    """Stored blobs and new :class:`Component` rows for ``files`` (``revisions``: the revision of each code)."""
    names = {c.code: c.name for c in spec.components}
    rows = []
    for f in files:
        assert f.code is not None
        store_blob(session, f.data, f.sha256)
        if f.signature is not None:
            store_blob(session, f.signature, f.signature_sha256)
        rows.append(
            Component(
                code=f.code,
                name=names.get(f.code) or f.name or f.code,
                filename=f.filename,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
                detached_signature_sha256=f.signature_sha256,
                verification=f.verification,
                originals_check_required=f.originals_check_required,
                revision=revisions.get(f.code, 1),
                current=True,
                created_at=now,
            )
        )
    return rows


def _new_dossier(
    spec: ProcedureSpec, sub: Submission, components: list[Component], code: str, now: datetime, ctx: Context
) -> Dossier:
    deadlines = compute_deadlines([(Status.SUBMITTED, now)], spec.processing_days, ctx.calendar)
    dossier = Dossier(
        code=code,
        procedure_code=spec.code,
        agency_code=sub.agency_code,
        lead_agency_code=sub.agency_code,
        status=Status.SUBMITTED.value,
        channel=sub.channel,
        applicant=sub.applicant.model_dump(mode="json"),
        summary=sub.summary,
        return_method=sub.return_method,
        delivery_address=sub.delivery_address,
        extra=json.loads(json.dumps(dict(sub.model_extra or {}))),
        originals_check_required=any(c.originals_check_required for c in components),
        submitted_at=now,
        acknowledge_by=deadlines.acknowledge_by,
        due_at=deadlines.due_at,
        calendar_version=ctx.calendar.version,
        updated_at=now,
        # Given whole (not appended to): the collections of the new row stay loaded after the flush, even empty.
        components=list(components),
        fees=[Fee(code=f.code, name=f.name, amount=f.amount, paid=False) for f in spec.fees],
    )
    return dossier


def _take_in(
    uow: UnitOfWork,
    ctx: Context,
    sub: Submission,
    files: Sequence[PreparedFile],
    *,
    principal: Principal,
    now: datetime,
    render: Render,
) -> tuple[int, dict[str, Any]]:
    session = uow.session
    spec, errors = check_catalogue(session, sub)  # again (or first), now inside the transaction
    if errors or spec is None:
        raise Invalid(errors)
    components = component_rows(session, spec, files, now=now, revisions={})
    code = allocate_code(session, sub.agency_code, now)
    dossier = _new_dossier(spec, sub, components, code, now, ctx)
    warnings = signature_warnings(spec, files)
    entry = HistoryEntry(
        status=Status.SUBMITTED.value,
        at=now,
        actor=principal.name,
        note=warnings_note(warnings),
        details={"signature_warnings": warnings} if warnings else {},
    )
    dossier.history.append(entry)
    write_new(session, dossier, ("components", "fees", "history"))
    enqueue_delivery(session, dossier, dossier.agency_code)
    uow.emit(changed(dossier, entry, previous=None, now=now))
    uow.publish()
    body = render(session, dossier, now, created=True)
    audit.append(
        session,
        principal.name,
        "dossier.submitted",
        code,
        {
            "procedure_code": spec.code,
            "agency_code": dossier.agency_code,
            "components": [{"code": f.code, "sha256": f.sha256, "verdict": f.verdict} for f in files],
            "originals_check_required": dossier.originals_check_required,
        },
        at=now,
    )
    return 201, body


def _carries_files(document: Any) -> bool:
    """Whether a submission's body has components (files): only then is it large enough to hash off the loop."""
    return not isinstance(document, dict) or bool(document.get("components"))


async def submit(
    ctx: Context,
    principal: Principal,
    document: Any,
    *,
    idempotency_key: str | None,
    now: datetime,
    render: Render,
    path: str = "/api/v1/dossiers",
) -> Answer:
    """Take in a dossier (see the module documentation): the answer is ``201`` and ``render``'s view of it.

    Without files it is one transaction (the key looked up, every check, every row, the key's answer). With files,
    one read transaction first (the key and the catalogue) so that a repeat or a refused submission never costs a
    signature validation, then the files are decoded and verified outside any transaction, then the write.
    """
    context = await IdempotencyContext.build(
        principal, idempotency_key, "POST", path, document, large=_carries_files(document)
    )
    try:
        sub = parse_model(Submission, document)
    except Invalid:
        earlier = await answered_before(ctx.db, context)  # a key reused with another body says so first
        if earlier is not None:
            return earlier
        raise
    files: list[PreparedFile] = []
    if sub.components:
        earlier, errors = await ctx.db.run(lambda session: _precheck(session, context, sub), short=True)
        if earlier is not None:
            return earlier
        items = [(f"components[{i}]", c.code, c) for i, c in enumerate(sub.components)]
        files, file_errors = await prepare_files(items, max_bytes=ctx.max_file_bytes)
        if errors or file_errors:
            raise Invalid(errors + file_errors)
        await verify_files(ctx.verifier, files)
    check_signers(files, sub.applicant.model_dump(mode="json"), ctx.signer_must_match_applicant)

    def work(uow: UnitOfWork) -> tuple[int, dict[str, Any]]:
        return _take_in(uow, ctx, sub, files, principal=principal, now=now, render=render)

    return await run_idempotent(ctx.db, ctx.bus, context, work, short=not files)


def _precheck(
    session: Session, context: IdempotencyContext | None, sub: Submission
) -> tuple[Answer | None, list[dict[str, str]]]:
    """In one read transaction: the stored answer to a repeated key, else the catalogue's problems."""
    earlier = context.lookup(session) if context is not None else None
    if earlier is not None:
        return Answer(earlier[0], earlier[1], replayed=True), []
    return None, check_catalogue(session, sub)[1]
