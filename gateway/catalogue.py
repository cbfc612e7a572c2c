"""The procedure catalogue (danh mục thủ tục hành chính): what can be applied for, where, in how long, at what fee.

The catalogue is a file (a JSON list, or TOML with ``[[procedures]]``; see ``docs/catalogue.md``) loaded
with :func:`load_catalogue` and upserted into the ``procedures`` table with :func:`import_procedures`. Every entry is
checked strictly (unknown fields, floats for amounts, ``"yes"`` for booleans and duplicate codes are refused) and a
refusal is one line naming the file, the entry and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from adapters import jsonguard

from .domain.codes import is_valid_agency_code
from .store.memo import memo
from .store.models import Procedure
from .validation import validation_errors

__all__ = [
    "CatalogueError",
    "ComponentSpec",
    "FeeSpec",
    "ProcedureSpec",
    "get_procedure",
    "import_procedures",
    "known_procedure_codes",
    "list_procedures",
    "load_catalogue",
    "parse_catalogue",
]

_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", re.ASCII)


class CatalogueError(ValueError):
    """The catalogue cannot be used; ``str()`` is one line naming the file, the entry and the field."""


def _code(value: str) -> str:
    if _CODE_RE.match(value) is None:
        raise ValueError("must be letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)")
    return value


def _agency_code(value: str) -> str:
    if not is_valid_agency_code(value):
        raise ValueError(
            f"{value!r} is not an agency code (dot-separated letters and digits, 2–40 characters, e.g. 000.00.23.H38)"
        )
    return value


Code = Annotated[StrictStr, AfterValidator(_code)]
AgencyCode = Annotated[StrictStr, AfterValidator(_agency_code)]
Name = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]


def _no_duplicates(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(_Strict):
    """One document of a procedure (thành phần hồ sơ)."""

    code: Code
    name: Name
    required: StrictBool = True
    #: The applicant must sign it digitally (a missing or invalid signature is reported, never silently accepted).
    must_be_signed: StrictBool = False


class FeeSpec(_Strict):
    """One charge of a procedure (phí, lệ phí), in whole VND."""

    code: Code
    name: Name
    amount: Annotated[StrictInt, Field(ge=0)]


class ProcedureSpec(_Strict):
    """One catalogue entry (thủ tục hành chính): the shape of the catalogue file (``docs/catalogue.md``)."""

    code: Code
    name: Name
    #: The competent agencies, by official agency code.
    agencies: Annotated[list[AgencyCode], Field(min_length=1)]
    #: The legal processing time, in working days after reception.
    processing_days: Annotated[StrictInt, Field(ge=0)]
    components: list[ComponentSpec] = Field(default_factory=list)
    fees: list[FeeSpec] = Field(default_factory=list)
    #: Shares of the legal time between agencies of an inter-agency (liên thông) dossier; empty = equal shares.
    transfer_shares: dict[AgencyCode, Annotated[StrictInt | StrictFloat, Field(gt=0)]] = Field(default_factory=dict)
    #: The result may be handed over (``returned``, or sent by post) before the fees are paid; by default fees come
    #: first.
    fees_after_result: StrictBool = False
    #: What status 8 (suspended, *dừng xử lý*) means: ``pause`` stops the clock until processing resumes; ``stop``
    #: ends processing for good.
    suspension: Literal["pause", "stop"] = "pause"

    @model_validator(mode="after")
    def _consistent(self) -> ProcedureSpec:
        _no_duplicates(self.agencies, "agency")
        _no_duplicates((c.code for c in self.components), "component code")
        _no_duplicates((f.code for f in self.fees), "fee code")
        strangers = sorted(set(self.transfer_shares) - set(self.agencies))
        if strangers:
            raise ValueError(f"transfer_shares names agencies not in agencies: {', '.join(strangers)}")
        return self

    @property
    def total_fee(self) -> int:
        return sum(fee.amount for fee in self.fees)

    def to_row(self) -> dict[str, Any]:
        """The column values of this entry in the ``procedures`` table."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in _COLUMNS}

    @classmethod
    def from_row(cls, row: Procedure) -> ProcedureSpec:
        return cls.model_validate({key: getattr(row, key) for key in _COLUMNS})


_COLUMNS = (
    "code",
    "name",
    "agencies",
    "processing_days",
    "components",
    "fees",
    "transfer_shares",
    "fees_after_result",
    "suspension",
)


# --- error messages -------------------------------------------------------------------------------------------------


def _one_line(problems: list[dict[str, str]]) -> str:
    first = problems[0]
    text = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return text


# --- loading --------------------------------------------------------------------------------------------------------


def _read_entries(text: str, source: str, fmt: str) -> list[Any]:
    if fmt == "json":
        try:
            data = jsonguard.loads(text, unique_keys=True)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError, as is a duplicate key
            raise CatalogueError(f"{source}: not valid JSON: {exc}") from exc
        if not isinstance(data, list):
            raise CatalogueError(f"{source}: expected a JSON list of procedures, got a {type(data).__name__}")
        return data
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"procedures"})
    if unknown:
        raise CatalogueError(f"{source}: unknown top-level key {unknown[0]!r} (expected only [[procedures]])")
    entries = data.get("procedures")
    if not isinstance(entries, list):
        raise CatalogueError(f"{source}: expected [[procedures]] tables")
    return entries


def _sniff(text: str) -> str:
    """``json`` for a document that starts like a JSON list or object, else ``toml``."""
    head = text.lstrip("\ufeff \t\r\n")
    return "json" if head.startswith("{") or (head.startswith("[") and not head.startswith("[[")) else "toml"


def parse_catalogue(text: str, *, source: str = "<catalogue>", fmt: str | None = None) -> list[ProcedureSpec]:
    """The entries of a catalogue document (``fmt`` ``json`` or ``toml``; sniffed when not given)."""
    entries = _read_entries(text, source, fmt or _sniff(text))
    specs: list[ProcedureSpec] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(entries):
        code = entry.get("code") if isinstance(entry, dict) else None
        where = f"{source}: entry {index}" + (f" ({code})" if isinstance(code, str) and code else "")
        if not isinstance(entry, dict):
            raise CatalogueError(f"{where}: expected an object/table, got a {type(entry).__name__}")
        try:
            spec = ProcedureSpec.model_validate(entry)
        except ValidationError as exc:
            raise CatalogueError(f"{where}: {_one_line(validation_errors(exc))}") from None
        if spec.code in first_index:
            raise CatalogueError(f"{where}: code: duplicate procedure code (already entry {first_index[spec.code]})")
        first_index[spec.code] = index
        specs.append(spec)
    return specs


def load_catalogue(path: str | Path) -> list[ProcedureSpec]:
    """The catalogue in ``path``: ``.json`` is JSON, ``.toml`` is TOML, anything else is sniffed."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{file}: no such file") from None
    except UnicodeDecodeError:
        raise CatalogueError(f"{file}: not UTF-8 text") from None
    except OSError as exc:
        raise CatalogueError(f"{file}: cannot read: {exc.strerror}") from None
    suffix = file.suffix.lower()
    fmt = {".json": "json", ".toml": "toml"}.get(suffix)
    return parse_catalogue(text, source=str(file), fmt=fmt)


# --- storage --------------------------------------------------------------------------------------------------------


def import_procedures(session: Session, specs: Sequence[ProcedureSpec]) -> tuple[int, int]:
    """Upsert ``specs`` into the ``procedures`` table: ``(created, updated)``.

    An entry identical to the stored one counts as neither; procedures absent from ``specs`` are left as they are.
    """
    codes = [spec.code for spec in specs]
    try:
        _no_duplicates(codes, "procedure code")
    except ValueError as exc:
        raise CatalogueError(f"import refused: {exc}") from None
    existing = {row.code: row for row in session.scalars(select(Procedure).where(Procedure.code.in_(codes)))}
    created = updated = 0
    for spec in specs:
        values = spec.to_row()
        row = existing.get(spec.code)
        if row is None:
            session.add(Procedure(**values))
            created += 1
        elif any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            updated += 1
    session.flush()
    memo(session).pop(_SPECS, None)  # looked up before this import: read again
    return created, updated


#: Memo key (:mod:`gateway.store.memo`): the catalogue entries looked up in this transaction, by code (``None``: not
#: in the catalogue).
_SPECS = "procedure_specs"
_TABLE = Procedure.__table__
#: One catalogue row's columns (a plain statement, built once).
_ROW = select(*(_TABLE.c[key] for key in _COLUMNS)).where(_TABLE.c.code == bindparam("code"))
#: The entries built in this process, by code, with the column values each was built from: an entry is built again
#: only when its row's values differ. At most one per procedure of the catalogue.
_BUILT: dict[str, tuple[tuple[Any, ...], ProcedureSpec]] = {}


def get_procedure(session: Session, code: str) -> ProcedureSpec | None:
    """The catalogue entry ``code``, or ``None`` when it is not in the catalogue.

    Read once per transaction, with one plain statement: later look-ups in the transaction answer what the first one
    read, as a session's identity map would (kept in the transaction's memo, :mod:`gateway.store.memo`;
    :func:`import_procedures` forgets them, so an entry changed there is seen at once). The entry is immutable, and
    built again only when its row's values changed.
    """
    specs: dict[str, ProcedureSpec | None] = memo(session).setdefault(_SPECS, {})
    if code in specs:
        return specs[code]
    row = session.execute(_ROW, {"code": code}).first()
    spec = None
    if row is not None:
        values = tuple(row)
        built = _BUILT.get(code)
        if built is not None and built[0] == values:
            spec = built[1]
        else:
            spec = ProcedureSpec.model_validate(dict(zip(_COLUMNS, values, strict=True)))
            _BUILT[code] = (values, spec)
    specs[code] = spec
    return spec


def list_procedures(session: Session) -> list[ProcedureSpec]:
    """Every catalogue entry, by code."""
    return [ProcedureSpec.from_row(row) for row in session.scalars(select(Procedure).order_by(Procedure.code))]


def known_procedure_codes(session: Session) -> dict[str, list[str]]:
    """Every procedure code in the catalogue, with its competent agencies (for validating registrations)."""
    rows = session.execute(select(Procedure.code, Procedure.agencies))
    return {code: list(agencies or []) for code, agencies in rows}
