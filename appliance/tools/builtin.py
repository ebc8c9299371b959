"""The tools every appliance has: a calculator and the clock.

``search_documents`` is built in too; it needs the retriever, so the toolbox
makes it (``appliance.tools.toolbox``).
"""

from __future__ import annotations

import ast
import math
import operator
from datetime import datetime
from typing import Any

from appliance.tools.spec import ToolError

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "abs": abs, "round": round, "min": min, "max": max, "sqrt": math.sqrt, "log": math.log,
    "log10": math.log10, "exp": math.exp, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "floor": math.floor, "ceil": math.ceil,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}
# Bounds that keep one expression cheap: 10**10**10 is refused, not computed.
MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300


def calculate(expression: str) -> int | float:
    """Arithmetic, parsed (never ``eval``): numbers, + - * / // % **, parentheses
    and a few functions (sqrt, log, round, ...). A ToolError names what is wrong."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**").replace("×", "*").replace("÷", "/"), mode="eval")
    except SyntaxError:
        raise ToolError(f"{expression!r} is not arithmetic: use numbers, + - * / ** and parentheses") from None
    try:
        value = _evaluate(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        raise ToolError(f"{expression!r} cannot be computed: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _evaluate(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"an exponent above {MAX_EXPONENT}")
        value = _BINARY[type(node.op)](left, right)
        if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
            raise ValueError("the result is not a real number this calculator can show")
        return value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and len(node.args) <= 4
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed (numbers, operators and {', '.join(_FUNCTIONS)})")


CALCULATOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "expression": {"type": "string", "description": "Arithmetic such as (12.5 * 4) / 3 or sqrt(2) ** 2"}
    },
    "required": ["expression"],
    "additionalProperties": False,
}
CURRENT_TIME_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def current_time() -> dict[str, str]:
    """The appliance's clock, in its own time zone."""
    now = datetime.now().astimezone()
    return {"iso": now.isoformat(timespec="seconds"), "time_zone": now.tzname() or "", "weekday": now.strftime("%A")}
