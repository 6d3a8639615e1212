"""The argument types of the MCP tools, declared once: each helper returns the JSON Schema a
client is shown, and `value_problem` enforces exactly that schema (the keywords used here and
no others), so what is listed and what is checked cannot drift.

Rules every argument follows: a type is exact (a boolean is not an integer, 5.0 is not an
integer, a string is not a list); a number is finite and within its range; a string has a
length limit and no control characters (ktrdr.cli.limits, as on the command line); a list has
an item limit. `null` means the argument's default (`default` in the schema; no `default` means
"not given", e.g. `service` = every service), and a required argument cannot be `null`.
"""

from __future__ import annotations

import math
from typing import Any

from ktrdr.cli.limits import MAX_NAME, MAX_TEXT, text_problem

Schema = dict[str, Any]


def text(description: str, *, max_length: int = MAX_NAME, default: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "maxLength": max_length, "description": description}
    if default is not None:
        schema["default"] = default
    return schema


def choice(description: str, values: list[str], *, default: str | None = None) -> Schema:
    schema = text(description, default=default)
    schema["enum"] = values
    return schema


def flag(description: str, *, default: bool = False) -> Schema:
    return {"type": "boolean", "default": default, "description": description}


def integer(description: str, *, minimum: int, maximum: int, default: int | None = None) -> Schema:
    schema: Schema = {
        "type": "integer",
        "minimum": minimum,
        "maximum": maximum,
        "description": description,
    }
    if default is not None:
        schema["default"] = default
    return schema


def number(description: str, *, minimum: float, maximum: float, default: float) -> Schema:
    return {
        "type": "number",
        "minimum": minimum,
        "maximum": maximum,
        "default": default,
        "description": description,
    }


def text_list(description: str, *, max_items: int, max_length: int = MAX_TEXT) -> Schema:
    return {
        "type": "array",
        "items": {"type": "string", "maxLength": max_length},
        "maxItems": max_items,
        "default": [],
        "description": description,
    }


def value_problem(value: Any, schema: Schema) -> str | None:
    """Why `value` (not None) does not fit `schema`, or None."""
    kind = schema["type"]
    if kind == "string":
        return _string_problem(value, schema)
    if kind == "boolean":
        return None if isinstance(value, bool) else "must be true or false"
    if kind in ("integer", "number"):
        return _number_problem(value, schema)
    if kind == "array":
        return _array_problem(value, schema)
    raise ValueError(f"no check for schema type {kind!r}")  # a bug in a tool's declaration


def _string_problem(value: Any, schema: Schema) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    problem = text_problem(value, max_length=schema["maxLength"])
    if problem:
        return problem
    if "enum" in schema and value not in schema["enum"]:
        return f"must be one of {', '.join(schema['enum'])}"
    return None


def _number_problem(value: Any, schema: Schema) -> str | None:
    integral = schema["type"] == "integer"
    accepted = (int,) if integral else (int, float)
    if isinstance(value, bool) or not isinstance(value, accepted):
        return "must be an integer" if integral else "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    if value < schema["minimum"]:
        return f"must be at least {schema['minimum']}"
    if value > schema["maximum"]:
        return f"must be at most {schema['maximum']}"
    return None


def _array_problem(value: Any, schema: Schema) -> str | None:
    if not isinstance(value, list):
        return "must be a list of strings"
    if len(value) > schema["maxItems"]:
        return f"has {len(value)} items (at most {schema['maxItems']})"
    for index, item in enumerate(value):
        problem = _string_problem(item, schema["items"])
        if problem:
            return f"item {index} {problem}"
    return None
