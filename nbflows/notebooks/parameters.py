"""Papermill-style notebook parameters: inference, JSON schema, validation, CLI parsing, merging.

A notebook's parameters are the assignments in its cell tagged `parameters`, read with papermill's
own inspection (so `name: type = default  # help` and `# type:` comments mean what they mean to
papermill). As with papermill, a run injects only the parameters its deployment or the run itself
sets (run over deployment); every other parameter keeps the parameters cell's own code, so
`start = datetime.date(2024, 1, 1)` stays a date and `(1, 2)` a tuple. Names the notebook does not
define and values of the wrong JSON type are refused.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from nbflows.errors import InvalidInput

if TYPE_CHECKING:  # nbformat's import costs a CLI command a second (jsonschema's IRI grammars)
    from nbformat import NotebookNode

__all__ = [
    "PARAMETERS_TAG",
    "infer_parameters",
    "parameter_defaults",
    "parameter_schema",
    "parameters_cell_index",
    "parse_key_values",
    "parse_value",
    "run_parameters",
    "validate_parameters",
]

PARAMETERS_TAG = "parameters"

# Python annotation (or `# type:` comment) → JSON type. Anything else (Optional[...], Union, Any,
# custom classes) is "unknown" (None): such a parameter accepts any value, rather than risk
# refusing a valid one.
_ANNOTATION_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "tuple": "array",
    "sequence": "array",
    "dict": "object",
    "mapping": "object",
}

_TYPE_PHRASES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "array": "an array (a list)",
    "object": "an object (a dict)",
    "null": "null",
}


def infer_parameters(nb: NotebookNode) -> dict[str, dict[str, Any]]:
    """The parameters defined by `nb`'s first cell tagged `parameters`, in cell order.

    Each maps to `{"type": <JSON type name or None when unknown>, "default": <value or None>,
    "help": <str>}`. The type comes from the annotation or `# type:` comment when there is one,
    else from the default's literal value. The default is the value of the assignment when it is
    a Python literal (`ast.literal_eval`; tuples become lists), else None. A notebook without a
    parameters cell, or in a language papermill cannot inspect, has no parameters: `{}`.
    """
    found = _inspect(nb)
    if found is None:
        return {}
    params: dict[str, dict[str, Any]] = {}
    for param in found:
        default = _literal_default(param.default)
        declared = _annotation_type(param.inferred_type_name)
        params[param.name] = {
            "type": declared if declared is not None else _json_type(default),
            "default": default,
            "help": param.help or "",
        }
    return params


def parameters_cell_index(nb: NotebookNode) -> int | None:
    """Index of the first cell tagged `parameters` (the one papermill uses), or None."""
    # papermill.utils.find_first_tagged_cell_index needs every cell to have metadata.tags, which
    # only notebooks loaded by papermill have.
    for index, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags")
        if isinstance(tags, list) and PARAMETERS_TAG in tags:
            return index
    return None


def parameter_schema(nb: NotebookNode) -> dict[str, Any]:
    """A JSON schema (`type: object`, no `required`) describing `nb`'s parameters.

    Each property has `type` when known, `default` when it is a literal other than None, and
    `description` when the parameters cell gives help text. `additionalProperties` is true only
    for a parameters cell papermill cannot inspect (a language other than Python): its names are
    unknown, so any parameter is accepted and injected, as papermill does.
    """
    properties: dict[str, Any] = {}
    for name, info in infer_parameters(nb).items():
        prop: dict[str, Any] = {}
        if info["type"] is not None:
            prop["type"] = info["type"]
        if info["default"] is not None:
            prop["default"] = info["default"]
        if info["help"]:
            prop["description"] = info["help"]
        properties[name] = prop
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": _inspect(nb) is None,
    }


def run_parameters(
    deployment: Mapping[str, Any] | None, run: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The parameters a run injects: the deployment's, overridden by the run's.

    The notebook's defaults are not among them: a parameter neither sets keeps the code of the
    parameters cell (papermill's semantics), so a computed default is computed by the run.
    """
    return {**(deployment or {}), **(run or {})}


def parameter_defaults(
    schema: Mapping[str, Any] | None, *layers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The value each parameter of `schema` shows by default: the notebook's default (when it is a
    JSON literal), then each layer (a deployment's parameters, a run's) over it; the one reading
    of defaults for forms (dashboard, deploy form) and listings."""
    props = (schema or {}).get("properties") or {}
    values = {name: prop.get("default") for name, prop in props.items()}
    for layer in layers:
        values.update({k: v for k, v in (layer or {}).items() if k in props})
    return values


def validate_parameters(schema: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check `values` against the parameter schema `schema` and return them.

    `schema` is a `parameter_schema` (a deployment's `parameter_schema`). Raises `InvalidInput` for
    names the notebook does not define (listing the valid ones), unless the schema allows any
    name (`additionalProperties: true`), and for values whose JSON type differs from the
    parameter's (an integer is accepted for a number; a boolean is not an integer). Parameters of
    unknown type accept any value.
    """
    if not isinstance(values, Mapping):
        raise InvalidInput(
            f"Parameters must be an object mapping names to values, got {_show(values)}"
        )
    schema_props: Mapping[str, Any] = schema.get("properties") or {}
    any_name = schema.get("additionalProperties") is True
    unknown = [name for name in values if name not in schema_props and not any_name]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        noun = "parameter" if len(unknown) == 1 else "parameters"
        if schema_props:
            valid = ", ".join(_describe(name, prop) for name, prop in schema_props.items())
            message = f"Unknown {noun} {listed}. Valid parameters: {valid}"
        else:
            message = (
                f"Unknown {noun} {listed}: the notebook defines no parameters (they are the "
                "assignments of its code cell tagged 'parameters'), so it accepts none"
            )
        raise InvalidInput(message, unknown=unknown, valid=list(schema_props))

    errors = []
    for name, value in values.items():
        prop = schema_props.get(name)
        expected = prop.get("type") if isinstance(prop, Mapping) else None
        if expected is None or _matches(value, expected):
            continue
        wanted = expected if isinstance(expected, list) else [expected]
        phrase = " or ".join(_TYPE_PHRASES.get(t, str(t)) for t in wanted)
        errors.append(
            f"parameter {name!r} must be {phrase}, got {_show(value)} ({_type_phrase(value)})"
        )
    if errors:
        message = "Invalid parameter value: " if len(errors) == 1 else "Invalid parameter values: "
        raise InvalidInput(message + "; ".join(errors), errors=errors)
    return dict(values)


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses as JSON, else the string itself.

    `5` → 5, `true` → True, `null` → None, `[1,2]` → list, `'"5"'` → "5", `hello` → "hello".
    NaN/Infinity stay strings (they are not JSON).
    """
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return text


def _json_type_ok(value: Any, allowed: set[str]) -> bool:
    if isinstance(value, bool):
        return "boolean" in allowed
    if isinstance(value, int):
        return bool({"integer", "number"} & allowed)
    if isinstance(value, float):
        return "number" in allowed
    names = {str: "string", type(None): "null", list: "array", dict: "object"}
    return names.get(type(value)) in allowed


def parse_key_values(
    items: Iterable[str] | None, option: str, schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`["k=v", ...]` → `{"k": parse_value("v"), ...}`; a later key wins over an earlier one.

    The one reading of `NAME=VALUE` options: the CLI's `--param`/`--job-variable` and `%deploy`.

    With a JSON schema of the parameters (a deployment's `parameter_schema`), a value whose JSON
    type the parameter does not accept but that may be a string stays the text that was typed:
    `--param zip=01234` for a string parameter is "01234", not 1234.
    """
    properties = (schema or {}).get("properties") or {}
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"{option} expects KEY=VALUE, got '{item}'")
        value = parse_value(text)
        kind = (properties.get(key) or {}).get("type") if isinstance(properties, dict) else None
        if kind is not None:
            allowed = {kind} if isinstance(kind, str) else {str(k) for k in kind}
            if "string" in allowed and not _json_type_ok(value, allowed):
                value = text
        result[key] = value
    return result


def _inspect(nb: NotebookNode) -> list[Any] | None:
    """papermill's `Parameter`s of `nb`'s parameters cell: `[]` without such a cell, None when
    papermill cannot inspect the notebook's language (it can only Python's)."""
    # Papermill is heavy to import and this module is also used from kernels.
    from papermill.exceptions import PapermillException
    from papermill.translators import papermill_translators

    index = parameters_cell_index(nb)
    if index is None:
        return []
    metadata = nb.get("metadata", {})
    kernelspec = metadata.get("kernelspec") or {}
    kernel = kernelspec.get("name") or "python3"
    language = kernelspec.get("language") or (metadata.get("language_info") or {}).get("name")
    try:
        translator = papermill_translators.find_translator(kernel, language or "python")
        return list(translator.inspect(nb.cells[index]))
    except (PapermillException, NotImplementedError):
        return None


def _literal_default(text: str) -> Any:
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """`value` with tuples as lists, or None when it has no JSON form (sets, bytes, complex)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v) for v in value]
        lost = any(i is None and v is not None for i, v in zip(items, value, strict=True))
        return None if lost else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return None
        converted = {k: _jsonable(v) for k, v in value.items()}
        if any(converted[k] is None and value[k] is not None for k in value):
            return None
        return converted
    return None


def _annotation_type(name: str | None) -> str | None:
    if not name or name == "None":  # papermill's "unknown"
        return None
    base = name.strip().strip("'\"").split("[", 1)[0].strip().lower()  # List[str] -> list
    return _ANNOTATION_TYPES.get(base)


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return None  # None default: the type is unknown


def _matches(value: Any, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return any(_matches(value, t) for t in expected)
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "array":
        return isinstance(value, (list, tuple))
    if expected == "null":
        return value is None
    python_type = {"string": str, "boolean": bool, "object": dict}.get(expected)
    return python_type is None or isinstance(value, python_type)


def _type_phrase(value: Any) -> str:
    """What `value` is, in JSON words: "a string", "an integer", "null"..."""
    if value is None:
        return "null"
    json_type = _json_type(list(value) if isinstance(value, tuple) else value)
    if json_type is None:
        return f"a Python {type(value).__name__}"
    return _TYPE_PHRASES[json_type].split(" (", 1)[0]


def _describe(name: str, prop: Any) -> str:
    declared = prop.get("type") if isinstance(prop, Mapping) else None
    if isinstance(declared, list):
        declared = "|".join(declared)
    return f"{name} ({declared})" if declared else name


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
