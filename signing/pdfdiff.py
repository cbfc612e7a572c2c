"""The difference analysis of later PDF revisions: pyHanko's default policy, with document timestamps rated as
validation data.

pyHanko rates an incremental update by the most a whitelisting rule needed to explain it: ``LTA_UPDATES`` for
validation data (DSS, an invisible document timestamp), ``FORM_FILLING`` for form filling and new signatures. The
tools that extend a signed PDF with a document timestamp (PAdES-LTA) commonly add more than pyHanko's rule for an
invisible timestamp expects: an appearance stream for the invisible field, or the form's default resources
(``/AcroForm /DR``) with the standard fonts. pyHanko then rates the update ``FORM_FILLING``, which after the last
signature means a change nobody vouches for.

:data:`DIFF_POLICY` rates those updates ``LTA_UPDATES`` too, and nothing else:

* what pyHanko attributes to a signature field filled with a new ``/DocTimeStamp`` whose widget has no area on the
  page (``/Rect`` of zero area: it shows nothing, whatever its appearance stream draws);
* in a revision that adds such a timestamp, the form's default resources when they only gain fonts among the 14
  standard Type 1 fonts (no embedded font program, a standard encoding) and keep every entry they had.

A visible document timestamp, a value or appearance of any other field, an annotation, page content: all are rated
as pyHanko rates them. Between two signatures form filling is allowed anyway, so this only matters after the last
one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import HistoricalResolver
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    FormUpdate,
    FormUpdatingRule,
    GenericFieldModificationRule,
    ModificationLevel,
    SigFieldCreationRule,
    SigFieldModificationRule,
    StandardDiffPolicy,
)
from pyhanko.sign.diff_analysis.rules.form_field_rules import is_field_visible
from pyhanko.sign.fields import enumerate_sig_fields

__all__ = ["DIFF_POLICY"]

#: The 14 standard Type 1 fonts every PDF reader has (ISO 32000-1 §9.6.2.2).
_STANDARD_FONTS = frozenset(
    {
        "/Times-Roman",
        "/Times-Bold",
        "/Times-Italic",
        "/Times-BoldItalic",
        "/Helvetica",
        "/Helvetica-Bold",
        "/Helvetica-Oblique",
        "/Helvetica-BoldOblique",
        "/Courier",
        "/Courier-Bold",
        "/Courier-Oblique",
        "/Courier-BoldOblique",
        "/Symbol",
        "/ZapfDingbats",
    }
)
_STANDARD_ENCODINGS = frozenset({"/WinAnsiEncoding", "/MacRomanEncoding", "/StandardEncoding", "/PDFDocEncoding"})
_STANDARD_FONT_KEYS = frozenset({"/Type", "/Subtype", "/BaseFont", "/Encoding", "/Name"})


class _DocumentTimestampFormRule(FormUpdatingRule):
    """pyHanko's form rule, with the updates that come with an invisible document timestamp rated LTA_UPDATES."""

    def apply(self, old: HistoricalResolver, new: HistoricalResolver) -> Iterator[tuple[ModificationLevel, FormUpdate]]:
        stamps = _new_invisible_document_timestamps(old, new)
        resources = _added_standard_fonts(old, new) if stamps else frozenset()
        for level, update in super().apply(old, new):
            if level is ModificationLevel.FORM_FILLING and (
                update.field_name in stamps or (update.field_name is None and update.updated_ref in resources)
            ):
                level = ModificationLevel.LTA_UPDATES
            yield level, update


def _filled_signature_fields(handler: HistoricalResolver) -> Iterator[tuple[str, Any, generic.DictionaryObject]]:
    for name, value, field_ref in enumerate_sig_fields(handler, filled_status=True):
        field = field_ref.get_object() if isinstance(field_ref, generic.IndirectObject) else field_ref
        if isinstance(field, generic.DictionaryObject):
            yield name, value, field


def _new_invisible_document_timestamps(old: HistoricalResolver, new: HistoricalResolver) -> frozenset[str]:
    """The signature fields filled in ``new`` (and not in ``old``) with a document timestamp that shows nothing."""
    before = {name for name, _, _ in _filled_signature_fields(old)}
    stamps = set()
    for name, value, field in _filled_signature_fields(new):
        if name in before:
            continue
        signature = value.get_object() if isinstance(value, generic.IndirectObject) else value
        if not isinstance(signature, generic.DictionaryObject):
            continue
        if signature.get("/Type") == "/DocTimeStamp" and not is_field_visible(field):
            stamps.add(name)
    return frozenset(stamps)


def _resolved(value: Any) -> Any:
    return value.get_object() if isinstance(value, generic.IndirectObject) else value


def _default_resources(handler: HistoricalResolver) -> tuple[Any, Any]:
    """The form's ``/DR`` entry as written (a reference or a dictionary) and resolved; ``None`` when absent."""
    try:
        raw = handler.root["/AcroForm"].raw_get("/DR")
    except (KeyError, TypeError, AttributeError):
        return None, None
    return raw, _resolved(raw)


def _added_standard_fonts(old: HistoricalResolver, new: HistoricalResolver) -> frozenset[generic.Reference]:
    """The objects of ``new``'s default resources, when these only add standard fonts to ``old``'s; else none."""
    _, before = _default_resources(old)
    raw, after = _default_resources(new)
    if after is None or after == before:
        return frozenset()
    before = before if isinstance(before, generic.DictionaryObject) else generic.DictionaryObject()
    if not isinstance(after, generic.DictionaryObject) or not set(after) <= set(before) | {"/Font"}:
        return frozenset()
    if any(key != "/Font" and after.raw_get(key) != before.raw_get(key) for key in before):
        return frozenset()
    if any(key not in after for key in before):
        return frozenset()
    old_fonts = _resolved(before.raw_get("/Font")) if "/Font" in before else generic.DictionaryObject()
    new_fonts = _resolved(after.raw_get("/Font"))
    if not isinstance(old_fonts, generic.DictionaryObject) or not isinstance(new_fonts, generic.DictionaryObject):
        return frozenset()
    for name in old_fonts:
        if name not in new_fonts or new_fonts.raw_get(name) != old_fonts.raw_get(name):
            return frozenset()  # an existing font replaced or removed: existing fields may render differently
    if not all(_is_standard_font(_resolved(new_fonts.raw_get(name))) for name in set(new_fonts) - set(old_fonts)):
        return frozenset()
    refs = set(new.collect_dependencies(after, since_revision=old.revision + 1))
    if isinstance(raw, generic.IndirectObject):
        refs.add(raw.reference)
    return frozenset(refs)


def _is_standard_font(font: Any) -> bool:
    """A font dictionary naming one of the standard 14 fonts, with nothing embedded and a standard encoding."""
    if not isinstance(font, generic.DictionaryObject) or not set(font) <= _STANDARD_FONT_KEYS:
        return False
    encoding = font.get("/Encoding")
    return (
        font.get("/Type") == "/Font"
        and font.get("/Subtype") == "/Type1"
        and font.get("/BaseFont") in _STANDARD_FONTS
        and (encoding is None or encoding in _STANDARD_ENCODINGS)
    )


def _field_rules() -> Iterable[Any]:
    return [SigFieldCreationRule(), SigFieldModificationRule(), GenericFieldModificationRule()]


#: pyHanko's default policy (the same global rules and field rules), document timestamps rated as validation data.
DIFF_POLICY = StandardDiffPolicy(
    global_rules=list(DEFAULT_DIFF_POLICY.global_rules),
    form_rule=_DocumentTimestampFormRule(field_rules=list(_field_rules())),
)
