"""The OpenAPI 3.1 document served at /v1/openapi.json: the detailed reference of the contract."""

from typing import Any

import orjson
from aiohttp import web

from models.events import MAX_EVENTS_PER_BATCH, MAX_PRICE_CENTS

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _event(kind: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "city", *required],
        "additionalProperties": False,
        "properties": {
            "type": {"const": kind},
            "city": {"type": "string"},
            "expected_version": {"type": "integer", "minimum": 0},
            **properties,
        },
    }


_PRICE = {"type": "integer", "minimum": 0, "maximum": MAX_PRICE_CENTS}
_ITEM_KEYS = {"restaurant_id": _ID, "item_id": _ID}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Feast Flow", "version": "1", "description": "Real-time menu, pricing and orders."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                    }
                },
            },
            "Item": {
                "type": "object",
                "properties": {
                    "restaurant_id": {"type": "string"},
                    "item_id": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "category": {"type": "string"},
                    "available": {"type": "boolean"},
                    "price_cents": {"type": "integer"},
                    "base_price_cents": {"type": "integer"},
                    "currency": {"type": "string"},
                    "version": {"type": "integer"},
                },
            },
            "Menu": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "cursor": {"type": "string", "description": "id of the last change reflected (Last-Event-ID)"},
                    "restaurants": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "restaurant_id": {"type": "string"},
                                "name": {"type": "string"},
                                "open": {"type": "boolean"},
                                "version": {"type": "integer"},
                                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                            },
                        },
                    },
                },
            },
            "AdminEvent": {
                "oneOf": [
                    _event(
                        "restaurant.upserted",
                        ["restaurant_id", "name"],
                        {"restaurant_id": _ID, "name": {"type": "string"}, "open": {"type": "boolean"}},
                    ),
                    _event(
                        "item.upserted",
                        ["restaurant_id", "item_id", "name"],
                        {
                            **_ITEM_KEYS,
                            "name": {"type": "string"},
                            "description": {"type": "string"},
                            "category": {"type": "string"},
                            "available": {"type": "boolean"},
                            "price_cents": _PRICE,
                        },
                    ),
                    _event("item.removed", ["restaurant_id", "item_id"], _ITEM_KEYS),
                    _event(
                        "item.availability_set",
                        ["restaurant_id", "item_id", "available"],
                        {**_ITEM_KEYS, "available": {"type": "boolean"}},
                    ),
                    _event(
                        "price.set", ["restaurant_id", "item_id", "price_cents"], {**_ITEM_KEYS, "price_cents": _PRICE}
                    ),
                    _event(
                        "pricing.rule_set",
                        ["rule"],
                        {
                            "rule": {
                                "oneOf": [
                                    {"type": "null"},
                                    {
                                        "type": "object",
                                        "required": ["multiplier"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "multiplier": {"type": "number", "minimum": 0.1, "maximum": 10},
                                            "effective_at": {"type": "string", "format": "date-time"},
                                            "until": {"type": "string", "format": "date-time"},
                                            "name": {"type": "string"},
                                        },
                                    },
                                ]
                            }
                        },
                    ),
                ]
            },
        },
    },
    "paths": {
        "/v1/cities": {"get": {"summary": "Cities served", "responses": {"200": _json({"type": "array"})}}},
        "/v1/cities/{city}/menu": {
            "get": {
                "summary": "A city's current menu",
                "responses": {"200": _json({"$ref": "#/components/schemas/Menu"}), **_errors(404)},
            }
        },
        "/v1/cities/{city}/pricing": {
            "get": {
                "summary": "The city's pricing rule (extension)",
                "responses": {"200": _json({"type": "object"}), **_errors(404)},
            }
        },
        "/v1/cities/{city}/menu/stream": {
            "get": {
                "summary": "Live menu changes (Server-Sent Events)",
                "description": "Events: snapshot, item, item_removed, restaurant, reconnect. Every event has an id; "
                "resume with Last-Event-ID (header or ?last_event_id=). Comment heartbeats every 10 s.",
                "responses": {"200": {"description": "text/event-stream"}, **_errors(404)},
            }
        },
        "/v1/admin/events": {
            "post": {
                "summary": "Publish one event or a batch (all or nothing, one city per batch)",
                "security": [{"bearer": []}],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/AdminEvent"},
                                    {
                                        "type": "object",
                                        "required": ["events"],
                                        "properties": {
                                            "events": {
                                                "type": "array",
                                                "minItems": 1,
                                                "maxItems": MAX_EVENTS_PER_BATCH,
                                                "items": {"$ref": "#/components/schemas/AdminEvent"},
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    }
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {"event_ids": {"type": "array"}, "batch_id": {"type": "string"}},
                        }
                    ),
                    **_errors(400, 401, 403, 409, 413, 422, 429, 503),
                },
            }
        },
        "/v1/admin/events/{event_id}": {
            "get": {
                "summary": "Where an event is: published, applied or rejected",
                "security": [{"bearer": []}],
                "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404)},
            }
        },
        "/v1/admin/items/{city}/{item_id}/history": {
            "get": {
                "summary": "Applied events of an item, oldest first",
                "security": [{"bearer": []}],
                "responses": {"200": _json({"type": "object"}), **_errors(401, 403, 404)},
            }
        },
        "/v1/orders": {
            "post": {
                "summary": "Place an order at the prices the customer saw (customer token)",
                "description": "The same idempotency_key from the same customer returns the same order_id and "
                "creates nothing; the same key with another body is a 409.",
                "security": [{"bearer": []}],
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["idempotency_key", "city", "restaurant_id", "lines"],
                                "properties": {
                                    "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 128},
                                    "city": {"type": "string"},
                                    "restaurant_id": _ID,
                                    "lines": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": 50,
                                        "items": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["item_id", "quantity", "price_cents"],
                                            "properties": {
                                                "item_id": _ID,
                                                "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
                                                "price_cents": {"type": "integer", "minimum": 0},
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "202": _json(
                        {"type": "object", "properties": {"order_id": {"type": "string"}, "status": {"type": "string"}}}
                    ),
                    **_errors(400, 401, 403, 409, 413, 422, 429, 503),
                },
            }
        },
        "/v1/orders/{order_id}": {
            "get": {
                "summary": "An order (its owner, its restaurant, or an admin)",
                "security": [{"bearer": []}],
                "responses": {"200": _json({"type": "object"}), **_errors(401, 404)},
            }
        },
        "/v1/orders/{order_id}/stream": {
            "get": {
                "summary": "Live status events (SSE); token also as ?access_token=; resume with Last-Event-ID",
                "responses": {"200": {"description": "text/event-stream"}, **_errors(401, 404)},
            }
        },
        "/v1/orders/{order_id}/status": {
            "post": {
                "summary": "Advance an order: preparing, out_for_delivery, delivered or cancelled "
                "(restaurant or admin token)",
                "security": [{"bearer": []}],
                "responses": {"202": _json({"type": "object"}), **_errors(401, 403, 404, 409, 422, 503)},
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
    },
}

_BODY = orjson.dumps(DOCUMENT)


async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type="application/json")
