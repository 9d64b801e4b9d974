"""Admin events as admins write them: flat (the envelope's fields beside the payload's), one or a batch of one
city. Declared from the payloads of models.events; read strictly, so a typo is refused, never ignored."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter

from models.errors import InvalidEvent
from models.events import (
    ADMIN_EVENT_TYPES,
    DECLARED,
    MAX_EVENTS_PER_BATCH,
    WIRE_TYPES,
    EventType,
    Payload,
    payload_from_wire,
)
from models.fields import CityCode, Version
from models.validation import field_path, validated


def _admin_declaration(kind: EventType) -> type:
    """An admin's event is flat: the envelope's fields beside the payload's."""
    envelope: list[Any] = [
        ("type", Literal[kind.value]),
        ("city", CityCode),
        ("expected_version", Version | None, field(default=None)),
    ]
    wire = WIRE_TYPES[kind]
    name = f"{wire.__name__.removesuffix('Spec')}Input"
    return make_dataclass(name, envelope, bases=(wire,), kw_only=True, frozen=True)


ADMIN_DECLARATIONS: dict[EventType, type] = {kind: _admin_declaration(kind) for kind in sorted(ADMIN_EVENT_TYPES)}
_ADMIN: dict[str, tuple[EventType, TypeAdapter[Any]]] = {
    kind.value: (kind, TypeAdapter(declaration)) for kind, declaration in ADMIN_DECLARATIONS.items()
}


@dataclass(frozen=True, slots=True)
class AdminEventInput:
    """An admin's event after validation, before it gets an id, a time and an actor."""

    type: EventType
    city: str
    payload: Payload
    expected_version: int | None


def parse_admin_event(source: Any, path: str, known_cities: Sequence[str]) -> AdminEventInput:
    if not isinstance(source, Mapping):
        raise InvalidEvent("each event must be a JSON object", field=path or None)
    raw_type = source.get("type")
    if not isinstance(raw_type, str) or raw_type not in _ADMIN:
        allowed = ", ".join(sorted(_ADMIN))
        raise InvalidEvent(
            f"unknown event type; one of: {allowed}", field=field_path(path, "type"), code="unknown_type"
        )
    kind, adapter = _ADMIN[raw_type]
    declared = validated(adapter, source, (path,), cities=known_cities)
    return AdminEventInput(kind, declared.city, payload_from_wire(kind, declared, path), declared.expected_version)


@dataclass(frozen=True, slots=True)
class AdminBatch:
    """Several events of one city, applied all or nothing."""

    __pydantic_config__: ClassVar[ConfigDict] = DECLARED
    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


_ADMIN_BATCH = TypeAdapter(AdminBatch)


def parse_admin_body(body: Any, known_cities: Sequence[str]) -> list[AdminEventInput]:
    """POST /v1/admin/events: one event, or {"events": [...]} of one city."""
    if isinstance(body, Mapping) and "events" in body and "type" not in body:
        batch = validated(_ADMIN_BATCH, body, code="invalid")
        sources = [(item, f"events[{i}]") for i, item in enumerate(batch.events)]
    else:
        sources = [(body, "")]
    inputs = [parse_admin_event(item, path, known_cities) for item, path in sources]
    if len({event.city for event in inputs}) > 1:
        raise InvalidEvent(
            "a batch is applied all or nothing within one city; send one batch per city",
            field="events",
            code="batch_spans_cities",
        )
    return inputs
