"""One input widget per notebook parameter, of the parameter's type (`parameter_input`), and the
value read back from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets

from nbflows.errors import InvalidInput

__all__ = ["parameter_input"]

LABEL_STYLE = {"description_width": "8em"}


def parameter_input(name: str, prop: Mapping[str, Any]) -> widgets.ValueWidget:
    """The input for one parameter of a notebook's parameter schema, by its JSON type.

    integer → IntText, number → FloatText, boolean → Checkbox, anything else → Text (arrays
    and objects typed as JSON; values of unknown type read as JSON when they parse).
    """
    kind = prop.get("type")
    default = prop.get("default")
    common: dict[str, Any] = {"description": name, "style": LABEL_STYLE}
    if prop.get("description"):
        common["tooltip"] = str(prop["description"])
    field: widgets.ValueWidget
    if kind == "integer":
        field = widgets.IntText(value=int(default) if default is not None else 0, **common)
    elif kind == "number":
        field = widgets.FloatText(value=float(default) if default is not None else 0.0, **common)
    elif kind == "boolean":
        field = widgets.Checkbox(value=bool(default), indent=True, **common)
    elif kind == "string":
        field = widgets.Text(value="" if default is None else str(default), **common)
    else:
        text = "" if default is None else json.dumps(default)
        hint = "JSON" if kind in ("array", "object") else "a value (JSON if it parses)"
        field = widgets.Text(value=text, placeholder=hint, **common)
    field.layout = widgets.Layout(width="32em")
    return field


def read_parameter(name: str, prop: Mapping[str, Any], field: widgets.ValueWidget) -> Any:
    kind = prop.get("type")
    value = field.value
    if kind in ("integer", "number", "boolean", "string"):
        return value
    text = str(value).strip()
    if kind in ("array", "object"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        expected = list if kind == "array" else dict
        if not isinstance(parsed, expected):
            example = "[1, 2]" if kind == "array" else '{"a": 1}'
            raise InvalidInput(
                f"parameter {name!r} must be a JSON {'list' if kind == 'array' else 'object'}, "
                f"e.g. {example}; got {text!r}"
            )
        return parsed
    try:
        return json.loads(text)
    except ValueError:
        return text
