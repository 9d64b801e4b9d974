"""The rules every field of the contract obeys, declared once as annotated types.

The event, command and response declarations are built from these; pydantic derives from them both the
validation (admin input, order input, and records read back from Kafka) and the JSON Schema that
/v1/openapi.json serves, so a rule written here is enforced and published alike.
"""

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BeforeValidator, Field, Strict, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError

T = TypeVar("T")

# pydantic-core compiles patterns with the Rust regex engine, where `$` matches only at the very end (no
# Python-style match before a final "\n"), so "abc\n" is refused; tests/unit/test_events.py proves it.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_PRICE_CENTS = 100_000_000
MAX_QUANTITY = 99
MAX_VERSION = 2**31 - 1  # versions are PostgreSQL integers
MIN_MULTIPLIER, MAX_MULTIPLIER = 0.1, 10.0
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100

# Control characters (Unicode Cc, NUL included), surrogates, the line and paragraph separators and the
# bidirectional embedding/override/isolate marks: none belongs in a name, and some break a store (PostgreSQL
# refuses NUL) or make a stored name display as something else. Zero-width joiners stay: Indic scripts and
# emoji need them.
_FORBIDDEN = "\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069"
_FORBIDDEN_IN_LINES = _FORBIDDEN.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f")  # multi-line text keeps "\n"
# What a client is told when a value does not match the pattern of its field.
PATTERN_MESSAGES = {
    ID_PATTERN: "must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
}
_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))


def _schema_class(chars: str) -> str:
    """The character class as a JSON Schema (ECMA-262) pattern writes it."""
    return "".join(c if c == "-" else f"\\u{ord(c):04x}" for c in chars)


def _no_forbidden_characters(forbidden: str) -> Callable[[str], str]:
    found = re.compile(f"[{forbidden}]")

    def check(value: str) -> str:
        bad = found.search(value)
        if bad is not None:
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found {character} at position {at})",
                {"character": f"U+{ord(bad.group()):04X}", "at": bad.start()},
            )
        return value

    return check


def _normalised(multiline: bool) -> Callable[[Any], Any]:
    def normalise(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the strict str check refuses it with the right message
        if multiline:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        try:
            return unicodedata.normalize("NFC", value).strip()
        except UnicodeError:  # a lone surrogate cannot be normalised; the character check names it
            return value.strip()

    return normalise


@dataclass(frozen=True, slots=True)
class Text(GroupedMetadata):
    """Human text: NFC, stripped, bounded (counted after both), no control characters. A token (`verbatim`)
    is kept exactly as sent: changing it would change what it identifies."""

    max_length: int
    min_length: int = 0
    multiline: bool = False
    verbatim: bool = False

    def __iter__(self) -> Iterator[Any]:
        forbidden = _FORBIDDEN_IN_LINES if self.multiline else _FORBIDDEN
        yield Strict()
        yield StringConstraints(min_length=self.min_length, max_length=self.max_length)
        if not self.verbatim:
            yield BeforeValidator(_normalised(self.multiline))
        yield AfterValidator(_no_forbidden_characters(forbidden))
        yield Field(json_schema_extra={"pattern": f"^[^{_schema_class(forbidden)}]*$"})


def valid_id(value: str) -> bool:
    """For ids in paths: a value refused here names nothing, so it is looked up nowhere."""
    return _ID.fullmatch(value) is not None


def _served_city(value: str, info: ValidationInfo) -> str:
    cities = info.context.get("cities") if isinstance(info.context, dict) else None
    if not _ID.fullmatch(value) or (cities is not None and value not in cities):
        raise PydanticCustomError("unknown_city", "unknown city")
    return value


def _timestamp(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PydanticCustomError("timestamp", "must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise PydanticCustomError("timestamp", "must carry a time zone (e.g. a trailing Z)")
    # Checked on the local date first: converting year 9999 or 0001 to UTC overflows.
    if not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise PydanticCustomError("timestamp_range", "must be between the years {earliest} and {latest}", _YEARS)
    return format_timestamp(parsed)


_YEARS = {"earliest": EARLIEST_YEAR, "latest": LATEST_YEAR}


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _optional_timestamp(value: str) -> str:
    return _timestamp(value) if value else value


def _empty_as_absent(value: Any) -> Any:
    return None if value == "" else value


# An optional field of a record read back from Kafka, where an older producer may have left it empty.
Absent = Annotated[T | None, BeforeValidator(_empty_as_absent)]

Id = Annotated[str, Strict(), StringConstraints(pattern=ID_PATTERN)]
CityCode = Annotated[str, Strict(), AfterValidator(_served_city), Field(json_schema_extra={"pattern": ID_PATTERN})]
Flag = Annotated[bool, Strict()]
PriceCents = Annotated[int, Strict(), Field(ge=0, le=MAX_PRICE_CENTS)]
Quantity = Annotated[int, Strict(), Field(ge=1, le=MAX_QUANTITY)]
Version = Annotated[int, Strict(), Field(ge=0, le=MAX_VERSION)]
Multiplier = Annotated[float, Strict(), Field(ge=MIN_MULTIPLIER, le=MAX_MULTIPLIER, allow_inf_nan=False)]
Timestamp = Annotated[str, Strict(), AfterValidator(_timestamp), Field(json_schema_extra={"format": "date-time"})]
# Optional in records read back from Kafka: older producers may have left it empty.
RecordTimestamp = Annotated[str, Strict(), AfterValidator(_optional_timestamp)]
Name = Annotated[str, Text(200, min_length=1)]
Description = Annotated[str, Text(2000, multiline=True)]
Category = Annotated[str, Text(64)]
RuleName = Annotated[str, Text(100)]
Actor = Annotated[str, Text(200, min_length=1)]
# Names the caller's request: the X-Request-Id the API accepts, or one it made up.
RequestId = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
IdempotencyKey = Annotated[str, Text(128, min_length=1, verbatim=True)]
