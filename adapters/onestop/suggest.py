"""Propose the ``mapping`` of a registration from an agency's own service description.

:func:`suggest_mapping` compares the agency's operations and element names with the reference service's: names are
compared without case, separators or Vietnamese diacritics (``Số hồ sơ``, ``SoHoSo`` and ``so_ho_so`` are one name),
against the reference name and its usual Vietnamese and English equivalents, and operations also by how many of
their elements match. Each guess carries a confidence between 0 and 1; the agency's developer checks and edits
the block before registering it.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adapters.onestop import wsdl as _shipped
from adapters.onestop.soap import OPERATIONS, REFERENCE_OPERATIONS, element_paths, message_type, select_port

__all__ = ["NATIONAL_STATUS_CODES", "Suggestion", "normalise", "suggest_mapping"]

#: The national portal's status codes, the values agencies' systems most often answer.
NATIONAL_STATUS_CODES = {
    "1": "submitted",
    "2": "received",
    "3": "refused",
    "4": "processing",
    "5": "supplement_requested",
    "6": "fee_requested",
    "7": "withdrawn",
    "8": "suspended",
    "9": "completed",
    "10": "returned",
}

_OPERATION_NAMES = {
    "deliver": ["TiepNhanHoSo", "NhanHoSo", "NopHoSo", "GuiHoSo", "TiepNhan", "submit", "deliver", "SubmitDossier"],
    "status": ["LayTrangThaiHoSo", "TraCuuHoSo", "LayTinhTrang", "TraCuu", "getStatus", "status", "query"],
    "supplement": ["BoSungHoSo", "BoSungThanhPhan", "BoSungTaiLieu", "BoSung", "supplement", "addDocuments"],
    "withdraw": ["RutHoSo", "HuyHoSo", "Rut", "Huy", "withdraw", "cancel", "CancelDossier"],
}
_FIELD_NAMES = {
    "MaHoSo": ["SoHoSo", "MaHS", "IdHoSo", "dossierCode", "dossierId", "applicationId", "fileNo"],
    "MaTTHC": ["MaThuTuc", "MaThuTucHanhChinh", "procedureCode", "procedureId", "serviceCode"],
    "KhoaYeuCau": ["MaGiaoDich", "idempotencyKey", "requestId", "transactionId", "requestKey"],
    "HoSo": ["HoSoDVC", "dossier", "application"],
    "ThanhPhanHoSo": ["TepDinhKem", "TaiLieu", "ThanhPhan", "GiayTo", "attachment", "attachments", "documents"],
    "MaThanhPhan": ["MaTaiLieu", "MaGiayTo", "MaTep", "documentCode", "attachmentCode", "componentCode"],
    "TrangThai": ["TinhTrang", "status", "state"],
    "LoiNghiepVu": ["ThongBaoLoi", "Loi", "error", "businessError", "fault"],
    "MaLoi": ["MaSoLoi", "errorCode"],
    "NgayTiepNhan": ["NgayNhan", "NgayNop", "receivedAt", "submittedAt"],
    "NoiDung": ["content", "data"],
    "TenTep": ["fileName"],
}
_ACCEPT = 0.8
#: In a description with more element names than this, those outside the operations' messages (the other global
#: types' children) are matched only when equal or contained, not by spelling (which costs names × references).
_SPELLING_LIMIT = 2000
_NOT_THEIRS = frozenset({*_shipped.WELL_KNOWN, "http://www.w3.org/2001/XMLSchema"})


@functools.lru_cache(maxsize=65536)
def normalise(name: str) -> str:
    """``name`` without diacritics (đ as d), case, separators or a namespace prefix."""
    local = name.rsplit("}", 1)[-1].rsplit(":", 1)[-1].replace("đ", "d").replace("Đ", "D")
    plain = "".join(c for c in unicodedata.normalize("NFKD", local) if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]", "", plain.lower())


#: A name held inside another counts as a near match only when it is this long, and at least this share of the other
#: (``HoSo`` is not ``ThanhPhanHoSo``; ``a`` or ``id`` is nothing).
_CONTAINED_LENGTH, _CONTAINED_SHARE = 5, 0.4


@functools.lru_cache(maxsize=262144)
def _pair(ours: str, theirs: str, floor: float) -> float:
    """The similarity of two normalised names; below ``floor`` it may be given as 0 (cached: large descriptions
    repeat their names in many places)."""
    if ours == theirs:
        return 1.0
    shorter, longer = sorted((len(ours), len(theirs)))
    contained = shorter >= _CONTAINED_LENGTH and shorter >= _CONTAINED_SHARE * longer
    if contained and (ours in theirs or theirs in ours):
        return max(0.85, difflib.SequenceMatcher(None, ours, theirs).ratio())
    if floor >= 1.0 or 2 * shorter / (shorter + longer) < floor:  # the best ratio names of these lengths reach
        return 0.0
    matcher = difflib.SequenceMatcher(None, ours, theirs)
    if matcher.real_quick_ratio() < floor or matcher.quick_ratio() < floor:
        return 0.0
    return matcher.ratio()


def similarity(name: str, candidates: Iterable[str], *, floor: float = 0.0) -> float:
    """How close ``name`` is to the closest of ``candidates`` (1: the same name once normalised); a similarity
    below ``floor`` may be given as 0."""
    ours, best = normalise(name), 0.0
    if not ours:
        return best
    for candidate in candidates:
        theirs = normalise(candidate)
        if theirs:
            best = max(best, _pair(ours, theirs, floor))
            if best == 1.0:
                break
    return best


@dataclass(frozen=True)
class Suggestion:
    """The proposed ``mapping`` block, each guess's confidence, and what found no counterpart."""

    mapping: dict[str, Any]
    confidence: dict[str, float] = field(default_factory=dict)
    unmatched: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"mapping": self.mapping, "confidence": self.confidence, "unmatched": list(self.unmatched)}


def _names(port: Any) -> dict[str, set[str]]:
    """Per operation of ``port``, every element name of its input and output (at any depth)."""
    names = {}
    for name, operation in port.binding._operations.items():
        found: set[str] = set()
        for message in (operation.input, operation.output):
            found.update(part for path in element_paths(message_type(message)) for part in path)
        names[name] = found
    return names


def _global_names(document: Any, operations: Iterable[str]) -> set[str]:
    """The names of the agency's global elements and types' children (fault details, arrays' items…), operation
    wrappers and the well-known schemas (SOAP encoding…) excluded."""
    wrappers = {f"{op}{tail}" for op in operations for tail in ("", "Request", "Response", "Result")}
    names: set[str] = set()
    for item in [*document.types.elements, *document.types.types]:
        qname = getattr(item, "qname", None)
        if qname is None or qname.namespace in _NOT_THEIRS or qname.localname in wrappers:
            continue
        if hasattr(item, "type"):  # an element (zeep's own xsd:schema element has no type)
            names.add(qname.localname)
            item = item.type
        names.update(part for path in element_paths(item, depth=3) for part in path)
    return names


def _operations(theirs: dict[str, set[str]], ours: dict[str, set[str]]) -> dict[str, tuple[str, float]]:
    scored = []
    for operation in OPERATIONS:
        reference = REFERENCE_OPERATIONS[operation]
        for name, elements in theirs.items():
            by_name = similarity(name, [reference, *_OPERATION_NAMES[operation]])
            wanted = ours[reference]
            shared = sum(1 for ref in wanted if similarity(ref, elements, floor=_ACCEPT) >= _ACCEPT) / max(
                len(wanted), 1
            )
            scored.append((0.75 * by_name + 0.25 * shared, operation, name))
    chosen: dict[str, tuple[str, float]] = {}
    for score, operation, name in sorted(scored, reverse=True):
        if operation not in chosen and all(name != picked for picked, _ in chosen.values()):
            chosen[operation] = (name, round(score, 2))
    return chosen


def _fields(ours: set[str], theirs: set[str], near_only: set[str]) -> dict[str, tuple[str, float]]:
    """The reference element names missing from ``theirs`` paired with their closest names; only names of
    ``near_only`` are compared by spelling, the others only as equal or contained names."""
    missing, free = sorted(ours - theirs), sorted(theirs - ours)
    scored = []
    for reference in missing:
        for name in free:
            floor = _ACCEPT if name in near_only else 1.0
            score = similarity(name, [reference, *_FIELD_NAMES.get(reference, [])], floor=floor)
            if score >= _ACCEPT:
                scored.append((score, reference, name))
    chosen: dict[str, tuple[str, float]] = {}
    used: set[str] = set()
    for score, reference, name in sorted(scored, reverse=True):
        if reference not in chosen and name not in used:
            chosen[reference] = (name, round(score, 2))
            used.add(name)
    return chosen


def suggest_mapping(document: Any, reference: Any) -> Suggestion:
    """The ``mapping`` that makes ``document`` (the agency's parsed description) play the reference service
    (``reference``, parsed): operations, element names and the status codes; with a confidence per guess."""
    port = select_port(document)
    reference_port = select_port(reference, soap_version="1.1")
    theirs, ours = _names(port), _names(reference_port)
    operations = _operations(theirs, ours)
    confidence = {f"operations.{op}": score for op, (_name, score) in operations.items()}
    in_messages = set().union(*theirs.values())
    their_names = in_messages | _global_names(document, theirs)
    our_names = set().union(*ours.values(), _global_names(reference, ours))
    fields = _fields(our_names, their_names, their_names if len(their_names) <= _SPELLING_LIMIT else in_messages)
    confidence.update({f"fields.{ref}": score for ref, (_name, score) in fields.items()})
    mapping: dict[str, Any] = {
        "operations": {op: name for op, (name, _score) in operations.items()},
        "fields": {ref: name for ref, (name, _score) in sorted(fields.items())},
        "statuses": dict(NATIONAL_STATUS_CODES),
    }
    if len([p for s in document.services.values() for p in s.ports.values()]) > 1:
        mapping["port"] = port.name
    unmatched = [f"operation {REFERENCE_OPERATIONS[op]}" for op in OPERATIONS if op not in operations]
    important = {"MaHoSo", "MaTTHC", "KhoaYeuCau", "HoSo", "ThanhPhanHoSo", "MaThanhPhan", "TrangThai"}
    unmatched += [f"element {name}" for name in sorted(important - their_names - set(fields))]
    return Suggestion(mapping=mapping, confidence=confidence, unmatched=tuple(unmatched))
