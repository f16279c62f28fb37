"""A small JSON Schema validator for the subset the verdict record's schema uses: `type`
(one or a list), `properties`, `required`, `additionalProperties`, `items`, `enum`,
`const`, `minimum`, `maximum` and local `$ref` to `#/$defs/...`. jsonschema is not a
dependency; this is enough to check our own files and to refuse a foreign one clearly.

This module never imports torch.
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class SchemaError(ValueError):
    """The first place where a document breaks its schema, as a JSON path and a reason."""


def validate(document: Any, schema: dict[str, Any]) -> None:
    """Raise SchemaError at the first violation; return None when `document` conforms."""
    _check(document, schema, schema, "$")


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = root["$defs"][name]
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, t) for t in types):
            raise SchemaError(f"{where}: expected {' or '.join(types)}, got {_name(value)}")
    if "const" in schema and value != schema["const"]:
        raise SchemaError(f"{where}: must be {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} is not one of {', '.join(map(str, schema['enum']))}")
    if _is(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(f"{where}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(f"{where}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        _check_object(value, schema, root, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]")


def _check_object(value: dict, schema: dict[str, Any], root: dict[str, Any], where: str) -> None:
    for key in schema.get("required", []):
        if key not in value:
            raise SchemaError(f"{where}: the field {key!r} is missing")
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            _check(item, properties[key], root, f"{where}.{key}")
        elif extra is False:
            raise SchemaError(f"{where}: unknown field {key!r}")
        elif isinstance(extra, dict):
            _check(item, extra, root, f"{where}.{key}")


def _is(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _name(value: Any) -> str:
    for kind in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, kind):
            return kind
    return type(value).__name__
