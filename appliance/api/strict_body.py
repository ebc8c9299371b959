"""JSON bodies are held to their types exactly, as the API description
states them. Litestar converts a body leniently (``"admin": 0`` becomes
``False``, ``"limit": "10"`` becomes 10); a client generated from the
description would never send those, and one that does has a bug to hear of."""

from __future__ import annotations

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import BodyKwarg

from appliance.engine.jsonable import integral


async def check_body_types(request: Request) -> None:
    """A before-request hook: a JSON body that is not exactly its type is a 400."""
    field = request.route_handler.parsed_data_field
    if field is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    body = field.kwarg_definition
    if isinstance(body, BodyKwarg) and body.media_type != RequestEncodingType.JSON:
        return
    raw = await request.body()
    try:  # one typed pass: what nearly every body needs
        msgspec.json.decode(raw, type=field.annotation, strict=True)
        return
    except msgspec.DecodeError:
        pass  # a type mismatch (ValidationError is a DecodeError), or malformed JSON
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return  # malformed JSON: Litestar's own decoding says so
    try:
        msgspec.convert(integral(value), field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        # msgspec says "Expected `int`, got `str` - at `$.limit`": name the field first.
        problem, _, where = str(exc).partition(" - at `$")
        field_name = where.rstrip("`").lstrip(".") or "data"
        raise ValidationException(
            f"Validation failed for {request.method} {request.url.path}",
            extra=[{"key": field_name, "message": problem}],
        ) from None
