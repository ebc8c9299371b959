"""Structured answers on llama.cpp: a GBNF grammar the reply must follow,
so it is always JSON (fitting a schema, when one is given).

A grammar cannot make a model stop, and a small model that repeats itself
runs to its token limit, which would cut the JSON short. So every string and
array the schema leaves unbounded is bounded here (``STRING_MAX``,
``ITEMS_MAX``), and an object without a schema is a flat one of a few short
values: whatever the model does, the reply ends within its token budget and
parses. A bounded string still fits the schema the client gave.
"""

from __future__ import annotations

import copy
import json
from typing import Any

STRING_MAX = 200
ITEMS_MAX = 20
# Any JSON object (json_object), kept small: up to six keys, short values.
JSON_OBJECT_GRAMMAR = r"""root ::= "{" ws ( pair ( "," ws pair ){0,5} )? ws "}"
pair ::= key ws ":" ws value
key ::= "\"" [a-zA-Z0-9_ -]{1,40} "\""
value ::= "\"" char{0,120} "\"" | "-"? [0-9]{1,12} ("." [0-9]{1,6})? | "true" | "false" | "null"
char ::= [^"\\\x00-\x1f] | "\\" ["\\/bfnrt]
ws ::= " "?
"""
# Tokens a structured answer may take: enough for the bounds above.
STRUCTURED_MAX_TOKENS = 768


def bounded(schema: Any) -> Any:
    """``schema`` with every unbounded string and array given a bound."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        free = not any(k in node for k in ("enum", "const", "pattern", "format"))
        if "string" in types and free and "maxLength" not in node:
            node["maxLength"] = STRING_MAX
        if "array" in types and "maxItems" not in node:
            node["maxItems"] = ITEMS_MAX
        for value in node.values():
            visit(value)

    visit(schema)
    return schema


def json_grammar(schema: dict[str, Any] | None) -> str:
    """A grammar of JSON fitting ``schema`` (bounded); None: a small JSON object."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if schema is None:
        return JSON_OBJECT_GRAMMAR
    return json_schema_to_gbnf(json.dumps(bounded(schema)))


def grammar_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` cannot be made a grammar, or None."""
    try:
        json_grammar(schema)
    except Exception as exc:  # the converter's own message names the keyword
        return f"{type(exc).__name__}: {exc}"[:300]
    return None
