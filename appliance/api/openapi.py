"""The OpenAPI description the appliance serves tells the truth, so a client
generated from it works: every error status a route can answer, in the body
it really has, the constraints the decoder enforces, and how to authenticate.

Litestar generates the description from the handlers; this completes it once
at start-up: request and response shapes are replaced by msgspec's own JSON
Schema of the same structs (the decoder's rules: bounds, enums, no unknown
fields), and each operation gets the error responses its route can give.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

from appliance.api import openai_schemas, schemas
from appliance.api.auth import admin_only
from appliance.api.openai_schemas import OPENAI_PREFIX

REF = "#/components/schemas/{name}"

# What each error status means here; the detail in the body says which case it is.
MEANING = {
    400: "The request is malformed: not JSON, a field of the wrong type, out of bounds or unknown, "
    "or text holding a NUL character or a lone surrogate. The detail names the field.",
    401: "No API key, or one that is not valid. Send it as X-API-Key or Authorization: Bearer.",
    403: "This needs an admin API key.",
    404: "Not found, or it belongs to another tenant.",
    409: "Conflicts with the current state, e.g. a run in progress on the thread or an id already taken.",
    413: "The body is larger than this appliance accepts.",
    415: "The document's type is not one the appliance can read.",
    422: "Well-formed, but it cannot be served as asked. The detail says what to change.",
    429: "A rate limit of the key or its tenant was reached; the detail names it, Retry-After says when to try again.",
    502: "The model failed to answer.",
    503: "PostgreSQL, Chroma or the model is unavailable or busy; Retry-After says when to try again.",
    504: "The model did not answer in time.",
    507: "The appliance's data disk is full: nothing was changed. An admin must free space.",
}
MODEL_STATUSES = (502, 503, 504)
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "the same API key, as a bearer token"},
}


def _structs() -> list[type[msgspec.Struct]]:
    """Every request and response struct of the API."""
    found = []
    for module in (schemas, openai_schemas):
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, msgspec.Struct) and value.__module__ == module.__name__:
                found.append(value)
    return found


def _error_body(path: str) -> dict[str, Any]:
    name = "OpenAIErrorBody" if path.startswith(OPENAI_PREFIX) else "ErrorBody"
    return {"application/json": {"schema": {"$ref": REF.format(name=name)}}}


def error_statuses(path: str, method: str, handler: HTTPRouteHandler, operation: dict[str, Any]) -> set[int]:
    """The error statuses this operation can answer, from what its route does."""
    body = operation.get("requestBody", {}).get("content", {})
    parameters = operation.get("parameters", [])
    authenticated = not handler.opt.get("exclude_from_auth")
    # Every request passes the text guard and Litestar's decoding.
    statuses = {400}
    if authenticated:
        statuses |= {401, 429, 503}  # the key is looked up, and its request counted, in PostgreSQL
    if admin_only in {getattr(guard, "func", guard) for guard in handler.resolve_guards()}:
        statuses.add(403)
    if any(p["in"] == "path" for p in parameters) or body:
        statuses.add(404)  # a path id, or an id the body names (assistant, thread, model)
    if authenticated and method in {"post", "patch", "put", "delete"}:
        statuses |= {409, 507}  # 507: a write the full data disk cannot take
    if body:
        statuses.add(413)
    if "multipart/form-data" in body:
        statuses.add(415)
    if body or any(p["in"] == "query" for p in parameters):
        statuses.add(422)
    if handler.opt.get("calls_model"):
        statuses |= set(MODEL_STATUSES)
    if handler.opt.get("answers_with_run"):
        # The run's own outcome: what ended it (the model, a full disk, a state it could not go on from).
        statuses |= {409, 507, *MODEL_STATUSES}
    if path.startswith(OPENAI_PREFIX):
        statuses.discard(422)  # answered as 400, which OpenAI's clients expect
    return statuses


def _operations(app: Litestar, paths: dict[str, Any]):
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = paths.get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    yield route.path_format, method.lower(), handler, operation


# One Server-Sent Event of a run's stream; ``data`` is JSON (the Agent Server's events).
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}},
}

# Text PostgreSQL cannot store is refused at the edge (api/text_guard.py); the
# description says so of every string and every key a client may send.
NO_NUL = "^[^\\u0000]*$"
JSON_VALUE = {
    "description": "any JSON value whose strings and keys hold no NUL character",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        {"type": "string", "pattern": NO_NUL},
        {"type": "array", "items": {"$ref": REF.format(name="JsonValue")}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": REF.format(name="JsonValue")},
        },
    ],
}
_SCHEMA_KEYWORDS = ("items", "additionalProperties", "not", "propertyNames", "contains")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")


def _text_rules(schema: Any) -> Any:
    """``schema`` with the text rule stated: strings and keys without NUL, free-form values as JsonValue."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    if not schema or set(schema) <= {"description", "title", "default", "examples"}:
        return {**schema, "$ref": REF.format(name="JsonValue")}  # any value
    types = schema.get("type")
    types = set(types) if isinstance(types, list) else {types}
    if "string" in types and not {"enum", "const", "format"} & schema.keys():
        if "pattern" in schema:  # one pattern a schema: the second as allOf
            schema["allOf"] = [*schema.get("allOf", []), {"pattern": NO_NUL}]
        else:
            schema["pattern"] = NO_NUL
    if "object" in types and schema.get("additionalProperties") is not False:
        schema.setdefault("propertyNames", {"pattern": NO_NUL})
        schema.setdefault("additionalProperties", {})  # keys beyond the named ones hold any JsonValue
    for key in _SCHEMA_KEYWORDS:
        if key in schema and isinstance(schema[key], dict):
            schema[key] = _text_rules(schema[key])
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            schema[key] = [_text_rules(item) for item in schema[key]]
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            schema[key] = {name: _text_rules(item) for name, item in schema[key].items()}
    return schema


def complete_description(app: Litestar) -> None:
    """Complete the generated description in place (it is built once and cached)."""
    # The plugin that serves /docs/openapi.json caches this very dict.
    description = app.plugins.get("OpenAPIPlugin").provide_openapi_schema()
    components = description.setdefault("components", {})
    generated = components.setdefault("schemas", {})
    _, truthful = msgspec.json.schema_components(_structs(), ref_template=REF)
    generated.update(truthful)
    generated["StorableValue"] = schemas.STORABLE_VALUE
    for name, schema in generated.items():
        generated[name] = _text_rules(copy.deepcopy(schema))
    generated["JsonValue"] = JSON_VALUE
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, method, handler, operation in _operations(app, description.get("paths", {})):
        for parameter in operation.get("parameters", []):
            if "schema" in parameter:
                parameter["schema"] = _text_rules(parameter["schema"])
            if parameter["name"] in handler.opt.get("empty_query", ()):
                parameter["allowEmptyValue"] = True  # an empty value is none
        for content in operation.get("requestBody", {}).get("content", {}).values():
            if "schema" in content:
                content["schema"] = _text_rules(content["schema"])
        responses = operation.setdefault("responses", {})
        responses.pop("400", None)  # Litestar's generic shape, not the body the appliance sends
        for status in sorted(error_statuses(path, method, handler, operation)):
            responses.setdefault(str(status), {"description": MEANING[status], "content": _error_body(path)})
        if handler.opt.get("event_stream") and "200" in responses:
            responses["200"]["content"] = {"text/event-stream": {"schema": SSE_EVENT}}
        if handler.opt.get("streams_when_asked") and "200" in responses:  # JSON, or events when `stream` is true
            responses["200"].setdefault("content", {})["text/event-stream"] = {"schema": SSE_EVENT}
        if not handler.opt.get("exclude_from_auth"):
            operation["security"] = [{"apiKey": []}, {"bearer": []}]
