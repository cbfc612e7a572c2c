"""Request documents validated against pydantic models, with every problem reported by field path.

:func:`parse_model` turns a JSON document into a model or raises :class:`~gateway.errors.Invalid` listing each
problem as ``{"field": "fees[0].amount", "message": "must be an integer (got 1.5)"}``; the catalogue, the registry
and the use cases share :func:`validation_errors` for that wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import Invalid, problem

__all__ = ["parse_model", "validation_errors"]

M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a table/object",
    "model_type": "must be a table/object",
    "model_attributes_type": "must be a table/object",
}
_SHOW_INPUT = {"int_type", "bool_type", "string_type", "list_type", "dict_type", "literal_error", "float_type"}


def _field(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        message = "must not be empty"
    elif kind == "too_short" and error.get("ctx", {}).get("min_length") == 1:
        message = "must not be empty"
    else:
        message = _MESSAGES.get(kind) or str(error["msg"]).removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
    if kind in _SHOW_INPUT:
        shown = repr(error.get("input"))
        message += f" (got {shown if len(shown) <= 40 else shown[:37] + '...'})"
    return message


def validation_errors(exc: ValidationError, *, prefix: Sequence[str | int] = ()) -> list[dict[str, str]]:
    """Pydantic's errors as ``[{"field": "fees[0].amount", "message": "must be an integer (got 1.5)"}]``."""
    return [
        {"field": _field((*prefix, *error["loc"])), "message": _message(error)}
        for error in exc.errors(include_url=False)
    ]


def parse_model(model: type[M], document: Any) -> M:
    """``document`` validated as ``model``; :class:`Invalid` with every problem, by field path."""
    if not isinstance(document, dict):
        raise Invalid([problem("", f"expected a JSON object, got {_json_kind(document)}")])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise Invalid(validation_errors(exc)) from None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
