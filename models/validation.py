"""Validating against the declarations, and the one translation of pydantic's errors into the contract's:
a machine code, a human sentence, and the field's path as clients name it (`events[0].rule.until`)."""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from models.errors import InvalidEvent
from models.fields import PATTERN_MESSAGES

T = TypeVar("T")

# Errors a declaration raises under its own name keep it as the contract's code; the rest are invalid content.
_OWN_CODES = frozenset({"unknown_city", "unknown_type"})
_UNKNOWN_FIELD = frozenset({"unexpected_keyword_argument", "extra_forbidden"})
_MESSAGES = {
    "missing": "is required",
    "missing_keyword_only_argument": "is required",
    "missing_positional_only_argument": "is required",
    "unexpected_keyword_argument": "unknown field",
    "extra_forbidden": "unknown field",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "dataclass_type": "must be an object",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
}


def field_path(*parts: str | int) -> str:
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += f".{part}" if path else part
    return path


def validated(
    adapter: TypeAdapter[T],
    source: Any,
    path: Sequence[str | int] = (),
    *,
    tolerant: bool = False,
    cities: Sequence[str] | None = None,
    code: str | None = None,
) -> T:
    """Admin and customer input is read strictly: an unknown field is refused, so a typo never passes
    silently. Records read back from Kafka are read tolerantly (unknown fields ignored, missing optional
    ones defaulted), so two versions of a service can run side by side; every other rule holds for both."""
    extra: Literal["ignore", "forbid"] = "ignore" if tolerant else "forbid"
    context: Mapping[str, Any] = {"cities": tuple(cities)} if cities is not None else {}
    try:
        return adapter.validate_python(source, extra=extra, context=context)
    except ValidationError as error:
        details = error.errors(include_url=False)
        # An unknown field is most often a misspelt one: naming it explains the "is required" that follows.
        first = next((d for d in details if d["type"] in _UNKNOWN_FIELD), details[0])
        raise invalid(first, path, code) from None


def invalid(detail: ErrorDetails, path: Sequence[str | int] = (), code: str | None = None) -> InvalidEvent:
    kind = detail["type"]
    message = _MESSAGES.get(kind) or _bound_message(detail) or _lower_first(detail["msg"])
    location = [part for part in detail["loc"] if isinstance(part, int | str)]
    return InvalidEvent(
        message,
        field=field_path(*path, *location) or None,
        code=kind if kind in _OWN_CODES else code,
    )


def _bound_message(detail: ErrorDetails) -> str | None:
    context = detail.get("ctx") or {}
    if detail["type"] == "less_than_equal":
        return f"must be at most {_number(context['le'])}"
    if detail["type"] == "greater_than_equal":
        return f"must be at least {_number(context['ge'])}"
    if detail["type"] == "string_too_short" and context.get("min_length") == 1:
        return "must not be empty"
    if detail["type"] == "string_pattern_mismatch":
        return PATTERN_MESSAGES.get(context.get("pattern", ""))
    return None


def _number(bound: Any) -> str:
    """10.0 reads as 10 in a message; 0.1 stays 0.1."""
    return str(int(bound)) if isinstance(bound, float) and bound.is_integer() else str(bound)


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]
