"""Base job templates: the one place job variables are checked, merged and rendered.

A work pool's base job template is ``{"job_configuration": {...}, "variables": <JSON schema>}``.
A job_configuration value that is a placeholder ``"{{ name }}"`` takes the value of the declared
variable ``name``; any other value is hard-coded (pinned) by the pool's admin. Deployments and runs
may set declared variables only, so a pinned value can never be overridden.

Typical use::

    template = validate_base_job_template(user_template)           # pool create / update
    check_job_variables(template, deployment.job_variables)         # deployment create
    variables = merge_job_variables(template, deployment.job_variables, run.job_variables)
    configuration = render_job_configuration(template, variables)  # what the worker runs
    log.info("job variables: %s", redact(variables, template))

Host access of docker pools is checked in `nbflows.workers.host_access`, redaction is
`nbflows.workers.redaction.redact`, the built-in pool types' variables are in
`nbflows.workers.job_variables`.

Everything here is pure: no I/O, inputs are never mutated, results are deep copies.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from nbflows.errors import InvalidInput
from nbflows.workers.host_access import (
    check_host_access,
    check_host_access_keys,
    host_access_problems,
)
from nbflows.workers.job_variables import COMMON_VARIABLES, DOCKER_VARIABLES, PROCESS_VARIABLES
from nbflows.workers.placeholders import (
    PLACEHOLDER,
    declared_variables,
    placeholders,
    variable_names,
)
from nbflows.workers.redaction import REDACTED, is_secret_env_key, is_secret_schema

__all__ = [
    "DEFAULT_TEMPLATES",
    "check_job_variables",
    "default_base_job_template",
    "merge_job_variables",
    "pool_types",
    "render_job_configuration",
    "template_for",
    "validate_base_job_template",
    "variable_defaults",
]
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TEMPLATE_KEYS = ("job_configuration", "variables")


def template_for(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The base job template exposing each of `variables` to the worker under its own name."""
    return {
        "job_configuration": {name: f"{{{{ {name} }}}}" for name in variables["properties"]},
        "variables": copy.deepcopy(dict(variables)),
    }


#: The base job templates of the built-in pool types (their workers declare the same).
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "process": template_for(PROCESS_VARIABLES),
    "docker": template_for(DOCKER_VARIABLES),
}


def pool_types() -> tuple[str, ...]:
    """The work pool types: one per worker entry point (`nbflows.workers`) installed here, the
    built-in types first, in their usual order, plug-ins after them."""
    found = sorted({ep.name for ep in _worker_entry_points()})
    return (
        *[k for k in DEFAULT_TEMPLATES if k in found],
        *[k for k in found if k not in DEFAULT_TEMPLATES],
    )


def default_base_job_template(pool_type: str) -> dict[str, Any]:
    """A fresh (deep) copy of the default base job template for ``pool_type``.

    A plug-in's template comes from its worker class (`BaseWorker.job_variables`), loaded from
    its entry point (not imported here: what the kernel side imports stays off the workers).
    """
    valid = pool_types()
    if pool_type not in valid:
        raise InvalidInput(
            f"unknown work pool type {pool_type!r}; valid types: {', '.join(valid)}",
            valid=list(valid),
        )
    if pool_type in DEFAULT_TEMPLATES:
        return copy.deepcopy(DEFAULT_TEMPLATES[pool_type])
    [entry] = [ep for ep in _worker_entry_points() if ep.name == pool_type][:1]
    try:
        worker = entry.load()
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(
            f"the '{pool_type}' worker ({entry.value}) cannot be loaded: {exc}"
        ) from exc
    return template_for(getattr(worker, "job_variables", COMMON_VARIABLES))


def _worker_entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    from nbflows.protocol import WORKERS_ENTRY_POINT_GROUP

    return list(entry_points(group=WORKERS_ENTRY_POINT_GROUP))


def validate_base_job_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """Check a user-supplied base job template and return a deep copy of it.

    Raises InvalidInput when it is not ``{"job_configuration": {...}, "variables": {...}}``, when
    ``variables`` is not a valid Draft 2020-12 object schema with ``properties``, when a default
    does not fit its own schema, when a placeholder names no declared variable, or when a declared
    variable is shadowed by a hard-coded job_configuration value of the same name.
    """
    if not isinstance(template, Mapping):
        raise InvalidInput(
            "a base job template must be an object with 'job_configuration' and 'variables'"
        )
    extra = sorted(set(template) - set(_TEMPLATE_KEYS))
    if extra:
        raise InvalidInput(
            f"unexpected key(s) in base job template: {', '.join(map(repr, extra))}; "
            "valid keys: 'job_configuration', 'variables'"
        )
    missing = [key for key in _TEMPLATE_KEYS if key not in template]
    if missing:
        raise InvalidInput(f"base job template is missing {' and '.join(map(repr, missing))}")
    configuration, schema = template["job_configuration"], template["variables"]
    if not isinstance(configuration, Mapping):
        raise InvalidInput("base job template 'job_configuration' must be an object")
    if not isinstance(schema, Mapping):
        raise InvalidInput("base job template 'variables' must be a JSON schema object")
    if schema.get("type") != "object":
        raise InvalidInput('base job template \'variables\' must have "type": "object"')
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        raise InvalidInput("base job template 'variables' must have 'properties' (an object)")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise InvalidInput(
            f"base job template 'variables' is not a valid JSON schema at {where}: {error.message}"
        ) from None

    bad_names = [name for name in properties if not _VARIABLE_NAME.fullmatch(name)]
    if bad_names:
        raise InvalidInput(
            f"invalid variable name(s) {', '.join(map(repr, bad_names))}: a variable name must "
            "be letters, digits and underscores, not starting with a digit"
        )
    undeclared_required = [name for name in schema.get("required", []) if name not in properties]
    if undeclared_required:
        raise InvalidInput(
            f"'required' names undeclared variable(s) {', '.join(map(repr, undeclared_required))}"
        )

    for path, name in placeholders(configuration, "job_configuration"):
        if name not in properties:
            raise InvalidInput(
                f"placeholder '{{{{ {name} }}}}' in {path} does not name a declared variable; "
                f"declared variables: {variable_names(properties)}"
            )

    referenced = {name for _, name in placeholders(configuration, "job_configuration")}
    for name in properties:
        if name in configuration and name not in referenced:
            raise InvalidInput(
                f"job_configuration.{name} is hard-coded but {name!r} is also declared in "
                f"'variables', so setting it would have no effect; remove {name!r} from "
                f"'variables' to pin the value, or set job_configuration.{name} to "
                f"'{{{{ {name} }}}}' to make it overridable"
            )

    defaults = variable_defaults(template)
    errors = _schema_errors(dict(template), defaults, enforce_required=False)
    if errors:
        raise InvalidInput(f"base job template has invalid default(s): {'; '.join(errors)}")
    check_host_access_keys(configuration)
    problems = host_access_problems(render_job_configuration(template, defaults), template=template)
    if problems:
        raise InvalidInput(
            f"base job template: its defaults {'; '.join(problems)}", problems=problems
        )
    return copy.deepcopy(dict(template))


def variable_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """The job variables a run gets when nothing sets them: each declared default (deep copies)."""
    return {
        name: copy.deepcopy(prop["default"])
        for name, prop in declared_variables(template).items()
        if isinstance(prop, Mapping) and "default" in prop
    }


def check_job_variables(
    template: Mapping[str, Any], variables: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Check one layer of job variables (a deployment's, or a run's) against the pool's template.

    Refuses pinned and unknown names and values of the wrong type; variables the schema requires
    are not demanded here, since a later layer or a default may still supply them. Returns a deep
    copy of the layer.
    """
    layer = _check_names(template, variables)
    errors = _schema_errors(template, layer, enforce_required=False)
    if errors:
        raise InvalidInput(f"invalid job variables: {'; '.join(errors)}", errors=errors)
    # Host access: a layer replaces `volumes`, `privileged` and `network_mode` as a whole, so
    # each layer over the defaults is what a run can get from it.
    over_defaults = {**variable_defaults(template), **layer}
    check_host_access(render_job_configuration(template, over_defaults), template=template)
    return layer


def merge_job_variables(
    template: Mapping[str, Any], *layers: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The job variables a run gets: schema defaults, then each layer in order (later wins).

    ``None`` layers are skipped. When both the current and the new value are objects (``env``,
    ``labels``) they are merged key by key; any other value is replaced. Each layer's names are
    checked first (pinned or unknown → InvalidInput), then the merged result is validated against
    the template's schema, including ``required``.
    """
    merged = variable_defaults(template)
    for variables in layers:
        for name, value in _check_names(template, variables).items():
            current = merged.get(name)
            if isinstance(current, dict) and isinstance(value, dict):
                merged[name] = {**current, **value}
            else:
                merged[name] = value
    errors = _schema_errors(template, merged, enforce_required=True)
    if errors:
        raise InvalidInput(f"invalid job variables: {'; '.join(errors)}", errors=errors)
    return merged


def render_job_configuration(
    template: Mapping[str, Any], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """The template's job_configuration with placeholders replaced by ``variables``.

    ``variables`` is normally the result of :func:`merge_job_variables`. A value that is exactly one
    placeholder takes the variable's value as is (a list stays a list); placeholders inside a longer
    string are replaced by the value as text (null → empty). Declared variables absent from
    ``variables`` are None; a placeholder naming an undeclared variable raises InvalidInput.
    """
    properties = declared_variables(template)

    def value_of(name: str) -> Any:
        if name in variables:
            return variables[name]
        if name in properties:
            return None
        raise InvalidInput(
            f"placeholder '{{{{ {name} }}}}' does not name a declared variable; "
            f"declared variables: {variable_names(properties)}"
        )

    def as_text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return json.dumps(value)

    def render(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: render(item) for key, item in value.items()}
        if isinstance(value, list):
            return [render(item) for item in value]
        if isinstance(value, str):
            whole = PLACEHOLDER.fullmatch(value)
            if whole:
                return copy.deepcopy(value_of(whole.group(1)))
            return PLACEHOLDER.sub(lambda match: as_text(value_of(match.group(1))), value)
        return copy.deepcopy(value)

    configuration = template.get("job_configuration")
    if not isinstance(configuration, Mapping):
        raise InvalidInput("base job template 'job_configuration' must be an object")
    return {key: render(value) for key, value in configuration.items()}


def _pinned(template: Mapping[str, Any]) -> set[str]:
    """job_configuration keys whose value the pool hard-codes: no placeholder feeds them."""
    configuration = template.get("job_configuration")
    if not isinstance(configuration, Mapping):
        return set()
    referenced = {name for _, name in placeholders(configuration, "")}
    return {
        key
        for key, value in configuration.items()
        if key not in referenced and not any(placeholders(value, ""))
    }


def _check_names(
    template: Mapping[str, Any], variables: Mapping[str, Any] | None
) -> dict[str, Any]:
    if variables is None:
        return {}
    if not isinstance(variables, Mapping):
        raise InvalidInput(
            f"job variables must be an object mapping variable names to values, "
            f"not {type(variables).__name__}"
        )
    properties = declared_variables(template)
    # A declared variable that the configuration hard-codes under its own name (and nowhere
    # reads) would be silently ignored, so it counts as pinned too.
    pinned = sorted(name for name in variables if name in _pinned(template))
    unknown = sorted(name for name in variables if name not in properties and name not in pinned)
    problems = []
    if pinned:
        problems.append(
            f"job variable(s) {', '.join(map(repr, pinned))} pinned by the work pool: its base "
            "job template hard-codes the value, which cannot be overridden"
        )
    if unknown:
        problems.append(f"unknown job variable(s) {', '.join(map(repr, unknown))}")
    if problems:
        raise InvalidInput(
            f"{'; '.join(problems)}; allowed variables: {variable_names(properties)}",
            pinned=pinned,
            unknown=unknown,
            allowed=sorted(properties),
        )
    return copy.deepcopy(dict(variables))


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str, enforce_required: bool) -> Draft202012Validator:
    """Compiled once per distinct schema: claims validate every run against the pool's template."""
    schema = json.loads(schema_json)
    if not enforce_required:
        schema.pop("required", None)
    return Draft202012Validator(schema)


def _schema_errors(
    template: Mapping[str, Any], values: Mapping[str, Any], *, enforce_required: bool
) -> list[str]:
    validator = _validator(json.dumps(template["variables"], sort_keys=True), enforce_required)
    errors = sorted(validator.iter_errors(values), key=lambda error: list(error.absolute_path))
    properties = declared_variables(template)
    messages: list[str] = []
    for error in errors:
        message = _describe(error, properties)
        if message not in messages:
            messages.append(message)
    return messages


def _describe(error: ValidationError, properties: Mapping[str, Any]) -> str:
    """One validation error as a sentence naming the variable, what is expected and what came."""
    path = list(error.absolute_path)
    if error.validator == "required" and not path:
        missing = [name for name in error.validator_value if name not in error.instance]
        return (
            f"job variable(s) {', '.join(map(repr, missing))} required: the pool's template has "
            "no default"
        )
    name = str(path[0]) if path else "(job variables)"
    where = name + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in path[1:]
    )
    secret = bool(path) and (
        is_secret_schema(properties.get(name))
        or (name == "env" and len(path) > 1 and is_secret_env_key(str(path[1])))
    )
    got = REDACTED if secret else _show(error.instance)
    expected = _expected(error)
    if expected:
        return f"job variable {where!r} must be {expected}, got {got}"
    if secret:
        # jsonschema's own message quotes the value, which must not be shown.
        return f"job variable {where!r} fails {error.validator!r} {error.validator_value!r}"
    return f"job variable {where!r}: {error.message}"


def _expected(error: ValidationError) -> str | None:
    if error.validator == "type":
        types = error.validator_value
        return " or ".join(types) if isinstance(types, list) else str(types)
    if error.validator == "enum":
        return "one of " + ", ".join(map(repr, error.validator_value))
    if error.validator == "pattern":
        description = error.schema.get("description") if isinstance(error.schema, Mapping) else None
        return f"a string matching {error.validator_value!r}" + (
            f" ({description})" if description else ""
        )
    if error.validator in ("anyOf", "oneOf"):
        types = [sub.get("type") for sub in error.validator_value if isinstance(sub, Mapping)]
        if types and all(isinstance(type_, str) for type_ in types):
            return " or ".join(types)
    return None


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"
