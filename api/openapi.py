"""The OpenAPI 3.1 document served at /v1/openapi.json, derived from the declarations in models/: the same
types that validate requests (and check responses) produce every schema here, so the two cannot disagree.
Only what a declaration cannot know is written here: the routes, their statuses, and the served cities."""

import functools
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from api.keys import SETTINGS
from api.menu_views import MENU_CACHE_CONTROL
from models.admin_events import ADMIN_DECLARATIONS, AdminBatch
from models.fields import ID_PATTERN
from models.orders import OrderRequest, StatusRequest
from models.responses import (
    CityInfo,
    CityPricingBody,
    ErrorBody,
    EventsAccepted,
    EventStatus,
    ItemHistory,
    Menu,
    OrderAccepted,
    OrderBody,
    StatusAccepted,
)

_REF = "#/components/schemas/{model}"
_DECLARED: list[tuple[str, JsonSchemaMode, type]] = [
    ("Error", "serialization", ErrorBody),
    ("City", "serialization", CityInfo),
    ("Menu", "serialization", Menu),
    ("CityPricing", "serialization", CityPricingBody),
    ("EventsAccepted", "serialization", EventsAccepted),
    ("EventStatus", "serialization", EventStatus),
    ("ItemHistory", "serialization", ItemHistory),
    ("OrderRequest", "validation", OrderRequest),
    ("OrderAccepted", "serialization", OrderAccepted),
    ("Order", "serialization", OrderBody),
    ("StatusRequest", "validation", StatusRequest),
    ("StatusAccepted", "serialization", StatusAccepted),
    ("AdminBatch", "validation", AdminBatch),
    *((f"admin:{kind.value}", "validation", declared) for kind, declared in ADMIN_DECLARATIONS.items()),
]


def _schemas() -> dict[str, Any]:
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, mode, TypeAdapter(declared)) for name, mode, declared in _DECLARED
    ]
    refs, definitions = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    schemas: dict[str, Any] = dict(definitions["$defs"])
    variants = []
    for (name, _), ref in refs.items():
        target = ref["$ref"].rsplit("/", 1)[1]
        if name.startswith("admin:"):
            variants.append(schemas.pop(target))  # inline: each variant names its type as a const
        elif target != name:
            schemas[name] = schemas.pop(target)
    schemas["AdminEvent"] = {"oneOf": variants}
    batch = schemas["AdminBatch"]
    batch["properties"]["events"]["items"] = {"$ref": _REF.format(model="AdminEvent")}
    return schemas


def _with_cities(node: Any, cities: Sequence[str]) -> Any:
    """Every `city` the declarations name may be only one the deployment serves."""
    if isinstance(node, dict):
        out = {key: _with_cities(value, cities) for key, value in node.items()}
        city = out.get("properties", {}).get("city")
        if isinstance(city, dict) and city.get("pattern") == ID_PATTERN:
            out["properties"]["city"] = {**city, "enum": list(cities)}
        return out
    if isinstance(node, list):
        return [_with_cities(value, cities) for value in node]
    return node


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "the contract's error body") for status in statuses}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _path(*names: str, cities: Sequence[str] = ()) -> list[dict[str, Any]]:
    def schema(name: str) -> dict[str, Any]:
        return {"type": "string", "enum": list(cities)} if name == "city" else {"type": "string", "pattern": ID_PATTERN}

    return [{"name": name, "in": "path", "required": True, "schema": schema(name)} for name in names]


_EVENT_ID = {
    "type": "string",
    "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$",
    "description": "an event id as sent in an SSE `id:` line; anything else is a 400 invalid_last_event_id",
}
_RESUME = [
    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _EVENT_ID},
    {"name": "last_event_id", "in": "query", "required": False, "schema": _EVENT_ID},
]
_SSE = {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_WRITE_ERRORS = (400, 401, 403, 409, 413, 415, 422, 429, 503)
# Any request may meet a pod limit or the auth throttle (429) or a dependency outage (503).
_READ_ERRORS = (429, 503)
_STREAM_ERRORS = (400, 404, 429, 503)


def build_document(cities: Sequence[str]) -> dict[str, Any]:
    city = _path("city", cities=cities)
    paths: dict[str, Any] = {
        "/v1/cities": {
            "get": {
                "summary": "Cities served",
                "responses": {"200": _json({"type": "array", "items": _ref("City")}), **_errors(*_READ_ERRORS)},
            }
        },
        "/v1/cities/{city}/menu": {
            "get": {
                "summary": "A city's current menu",
                "description": f"Cache-Control: {MENU_CACHE_CONTROL} with an ETag: a browser revalidates "
                "(If-None-Match, 304), a shared cache (the gateway, a CDN) may answer from a copy up to 1 s old. "
                "Open the stream with the body's cursor as Last-Event-ID to receive every change after it.",
                "parameters": city,
                "responses": {"200": _json(_ref("Menu")), **_errors(404, *_READ_ERRORS)},
            }
        },
        "/v1/cities/{city}/pricing": {
            "get": {
                "summary": "The city's pricing rule (extension)",
                "parameters": city,
                "responses": {"200": _json(_ref("CityPricing")), **_errors(404, *_READ_ERRORS)},
            }
        },
        "/v1/cities/{city}/menu/stream": {
            "get": {
                "summary": "Live menu changes (Server-Sent Events)",
                "description": "Events: snapshot, item, item_removed, restaurant, reconnect. Every event has an id; "
                "resume with Last-Event-ID (header or ?last_event_id=). Comment heartbeats every 10 s.",
                "parameters": [*city, *_RESUME],
                "responses": {"200": _SSE, **_errors(*_STREAM_ERRORS)},
            }
        },
        "/v1/admin/events": {
            "post": {
                "summary": "Publish one event or a batch (all or nothing, one city per batch)",
                "security": _BEARER,
                "requestBody": _body({"oneOf": [_ref("AdminEvent"), _ref("AdminBatch")]}),
                "responses": {"202": _json(_ref("EventsAccepted")), **_errors(*_WRITE_ERRORS)},
            }
        },
        "/v1/admin/events/{event_id}": {
            "get": {
                "summary": "Where an event is: published, applied or rejected",
                "security": _BEARER,
                "parameters": _path("event_id"),
                "responses": {"200": _json(_ref("EventStatus")), **_errors(401, 403, 404, *_READ_ERRORS)},
            }
        },
        "/v1/admin/items/{city}/{item_id}/history": {
            "get": {
                "summary": "Applied events of an item, oldest first",
                "security": _BEARER,
                "parameters": [*city, *_path("item_id")],
                "responses": {"200": _json(_ref("ItemHistory")), **_errors(401, 403, 404, *_READ_ERRORS)},
            }
        },
        "/v1/orders": {
            "post": {
                "summary": "Place an order at the prices the customer saw (customer token)",
                "description": "The same idempotency_key from the same customer returns the same order_id and "
                "creates nothing; the same key with another body is a 409.",
                "security": _BEARER,
                "requestBody": _body(_ref("OrderRequest")),
                "responses": {"202": _json(_ref("OrderAccepted")), **_errors(*_WRITE_ERRORS)},
            }
        },
        "/v1/orders/{order_id}": {
            "get": {
                "summary": "An order (its owner, its restaurant, or an admin)",
                "security": _BEARER,
                "parameters": _path("order_id"),
                "responses": {"200": _json(_ref("Order")), **_errors(401, 404, *_READ_ERRORS)},
            }
        },
        "/v1/orders/{order_id}/stream": {
            "get": {
                "summary": "Live status events (SSE); token also as ?access_token=; resume with Last-Event-ID",
                "security": _BEARER,
                "parameters": [*_path("order_id"), *_RESUME],
                "responses": {"200": _SSE, **_errors(401, *_STREAM_ERRORS)},
            }
        },
        "/v1/orders/{order_id}/status": {
            "post": {
                "summary": "Advance an order: preparing, out_for_delivery, delivered or cancelled "
                "(restaurant or admin token)",
                "security": _BEARER,
                "parameters": _path("order_id"),
                "requestBody": _body(_ref("StatusRequest")),
                "responses": {"202": _json(_ref("StatusAccepted")), **_errors(*_WRITE_ERRORS, 404)},
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Feast Flow", "version": "1", "description": "Real-time menu, pricing and orders."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": _with_cities(_schemas(), cities),
        },
        "paths": paths,
    }


@functools.lru_cache(maxsize=4)
def document_body(cities: tuple[str, ...]) -> bytes:
    return orjson.dumps(build_document(cities))


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=document_body(tuple(request.app[SETTINGS].city_codes)), content_type="application/json")
