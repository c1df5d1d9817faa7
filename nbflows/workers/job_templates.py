"""Base job templates: the one place job variables are checked, merged, rendered and redacted.

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

Docker pools are safe by default: a job configuration that mounts a host path, runs a
privileged container or uses the host's network is refused (`check_host_access`) unless the
pool's administrator allows it with hard-coded job_configuration keys of the base job template
(`allowed_host_paths`, `allow_privileged`, `allow_host_network`). The server checks at deploy and
run time; the worker checks again before it creates a container.

Everything here is pure: no I/O, inputs are never mutated, results are deep copies.
"""

from __future__ import annotations

import copy
import functools
import json
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from nbflows.errors import InvalidInput

__all__ = [
    "COMMON_VARIABLES",
    "DEFAULT_TEMPLATES",
    "DOCKER_VARIABLES",
    "HOST_ACCESS_KEYS",
    "PROCESS_VARIABLES",
    "REDACTED",
    "SECRET_ENV_WORDS",
    "check_host_access",
    "check_job_variables",
    "default_base_job_template",
    "host_access_problems",
    "merge_job_variables",
    "pool_types",
    "redact",
    "render_job_configuration",
    "template_for",
    "validate_base_job_template",
    "variable_defaults",
]

#: What a secret is replaced by wherever variables are shown (API, dashboard, logs).
REDACTED = "********"

#: An ``env`` entry whose key contains one of these words (any case) is treated as a secret.
SECRET_ENV_WORDS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")

# A placeholder is "{{ name }}"; the inner text is captured loosely so that a malformed one
# such as "{{ flow_run.id }}" is reported instead of silently left in the configuration.
_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_ENV_KEY = re.compile("|".join(SECRET_ENV_WORDS), re.IGNORECASE)
_TEMPLATE_KEYS = ("job_configuration", "variables")

#: job_configuration keys by which a pool's administrator allows what is refused by default:
#: bind mounts of host paths at or under `allowed_host_paths` (a list of absolute paths; the
#: Docker socket only when listed itself), privileged containers, the host's network. Only
#: hard-coded values count, so that no deployment can grant itself access to the host.
HOST_ACCESS_KEYS = ("allowed_host_paths", "allow_privileged", "allow_host_network")
_DOCKER_SOCKETS = ("docker.sock", "containerd.sock", "podman.sock")
# A Docker volume name; any other source of a mount is a path of the host.
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _nullable(type_: str) -> list[str]:
    return [type_, "null"]


_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}

_ENV = {
    "title": "Environment variables",
    "description": "Extra environment variables for the run, merged key by key over the pool's "
    "and the deployment's.",
    **_STRING_MAP,
    "default": {},
}
_LABELS = {
    "title": "Labels",
    "description": "Labels attached to the run's infrastructure, merged key by key.",
    **_STRING_MAP,
    "default": {},
}
_TIMEOUT = {
    "title": "Timeout (seconds)",
    "description": "Seconds after which the run is stopped and marked failed; null = no timeout.",
    "type": _nullable("number"),
    "exclusiveMinimum": 0,
    "default": None,
}
_STREAM_OUTPUT = {
    "title": "Stream output",
    "description": "Relay the run's output to the worker's log as it happens.",
    "type": "boolean",
    "default": True,
}

_PROCESS_VARIABLES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {
            "title": "Command",
            "description": "Command that runs the flow, as a list of arguments; null = the "
            "worker's default (papermill in a fresh kernel).",
            "type": _nullable("array"),
            "items": {"type": "string"},
            "default": None,
        },
        "env": _ENV,
        "working_dir": {
            "title": "Working directory",
            "description": "Folder the notebook runs in; null = the notebook's original folder.",
            "type": _nullable("string"),
            "default": None,
        },
        "timeout": _TIMEOUT,
        "kernel_name": {
            "title": "Kernel name",
            "description": "Jupyter kernel spec to run the notebook with; null = the notebook's "
            "own kernel spec.",
            "type": _nullable("string"),
            "default": None,
        },
        "stream_output": _STREAM_OUTPUT,
        "log_limit": {
            "title": "Log limit (lines)",
            "description": "Maximum number of log lines kept per run; the cut is said in the log.",
            "type": "integer",
            "minimum": 1,
            "default": 10000,
        },
        "labels": _LABELS,
    },
}

_DOCKER_VARIABLES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "image": {
            "title": "Image",
            "description": "Image the container runs; null = the deployment's image.",
            "type": _nullable("string"),
            "default": None,
        },
        "command": {
            "title": "Command",
            "description": "Command for the container, as a list of arguments; null = the "
            "worker's default (runs the flow with papermill).",
            "type": _nullable("array"),
            "items": {"type": "string"},
            "default": None,
        },
        "env": _ENV,
        "volumes": {
            "title": "Volumes",
            "description": "Volumes to mount, each 'host:container[:mode]', e.g. '/data:/data:ro'.",
            "type": "array",
            "items": {"type": "string", "pattern": "^[^:]+:/[^:]*(:[A-Za-z]+(,[A-Za-z]+)*)?$"},
            "default": [],
        },
        "network_mode": {
            "title": "Network mode",
            "description": "Docker network mode ('bridge', 'host', 'none', a network name); "
            "null = Docker's default.",
            "type": _nullable("string"),
            "default": None,
        },
        "mem_limit": {
            "title": "Memory limit",
            "description": "Container memory limit such as '512m' or '2g'; null = no limit.",
            "type": _nullable("string"),
            "pattern": "^[0-9]+[bkmgBKMG]?$",
            "default": None,
        },
        "cpus": {
            "title": "CPUs",
            "description": "Number of CPUs the container may use, e.g. 1.5; null = no limit.",
            "type": _nullable("number"),
            "exclusiveMinimum": 0,
            "default": None,
        },
        "auto_remove": {
            "title": "Auto remove",
            "description": "Remove the container when the run ends (its logs are kept by nbflows).",
            "type": "boolean",
            "default": True,
        },
        "image_pull_policy": {
            "title": "Image pull policy",
            "description": "When to pull the image before a run.",
            "type": "string",
            "enum": ["Always", "IfNotPresent", "Never"],
            "default": "IfNotPresent",
        },
        "labels": _LABELS,
        "privileged": {
            "title": "Privileged",
            "description": "Give the container extended privileges on the host.",
            "type": "boolean",
            "default": False,
        },
        "timeout": _TIMEOUT,
        "stream_output": _STREAM_OUTPUT,
        "base_image": {
            "title": "Base image",
            "description": "Base image of the Dockerfiles nbflows writes (dockerfile='auto') for "
            "deployments to this pool; null = the global default.",
            "type": _nullable("string"),
            "default": None,
        },
    },
}


#: The variables of a plug-in pool type whose worker declares none of its own.
COMMON_VARIABLES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "env": _ENV,
        "labels": _LABELS,
        "timeout": _TIMEOUT,
        "stream_output": _STREAM_OUTPUT,
    },
}
PROCESS_VARIABLES = _PROCESS_VARIABLES
DOCKER_VARIABLES = _DOCKER_VARIABLES


def template_for(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The base job template exposing each of `variables` to the worker under its own name."""
    return {
        "job_configuration": {name: f"{{{{ {name} }}}}" for name in variables["properties"]},
        "variables": copy.deepcopy(dict(variables)),
    }


#: The base job templates of the built-in pool types (their workers declare the same).
DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    "process": template_for(_PROCESS_VARIABLES),
    "docker": template_for(_DOCKER_VARIABLES),
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

    for path, name in _placeholders(configuration, "job_configuration"):
        if name not in properties:
            raise InvalidInput(
                f"placeholder '{{{{ {name} }}}}' in {path} does not name a declared variable; "
                f"declared variables: {_names(properties)}"
            )

    referenced = {name for _, name in _placeholders(configuration, "job_configuration")}
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
    _check_host_access_keys(configuration)
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
        for name, prop in _properties(template).items()
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
    properties = _properties(template)

    def value_of(name: str) -> Any:
        if name in variables:
            return variables[name]
        if name in properties:
            return None
        raise InvalidInput(
            f"placeholder '{{{{ {name} }}}}' does not name a declared variable; "
            f"declared variables: {_names(properties)}"
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
            whole = _PLACEHOLDER.fullmatch(value)
            if whole:
                return copy.deepcopy(value_of(whole.group(1)))
            return _PLACEHOLDER.sub(lambda match: as_text(value_of(match.group(1))), value)
        return copy.deepcopy(value)

    configuration = template.get("job_configuration")
    if not isinstance(configuration, Mapping):
        raise InvalidInput("base job template 'job_configuration' must be an object")
    return {key: render(value) for key, value in configuration.items()}


def check_host_access(
    configuration: Mapping[str, Any],
    *,
    template: Mapping[str, Any] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> None:
    """Raise InvalidInput (422) naming each way `configuration` (a rendered job configuration)
    reaches into the host that its pool does not allow (see `host_access_problems`)."""
    problems = host_access_problems(configuration, template=template, resolve=resolve)
    if problems:
        raise InvalidInput("; ".join(problems), problems=problems)


def host_access_problems(
    configuration: Mapping[str, Any],
    *,
    template: Mapping[str, Any] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> list[str]:
    """What `configuration` asks of the host beyond what its `HOST_ACCESS_KEYS` allow: bind
    mounts of host paths (`volumes`), `privileged`, and a `network_mode` of `host` (or another
    container's network). Each problem names the job variable (from `template`'s placeholders,
    else the configuration key) and what is allowed.

    Paths are judged as written (normalized, `..` resolved); `resolve` (the worker, on the
    engine's machine: `os.path.realpath`) also judges where symbolic links lead.
    """
    written = [posixpath.normpath(str(p)) for p in configuration.get("allowed_host_paths") or []]
    allowed = written + ([resolve(p) for p in written] if resolve is not None else [])
    problems: list[str] = []

    def variable(key: str) -> str:
        value = ((template or {}).get("job_configuration") or {}).get(key)
        whole = _PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
        return f"job variable {(whole.group(1) if whole else key)!r}"

    for mount in configuration.get("volumes") or []:
        source = str(mount).split(":", 1)[0]
        if _VOLUME_NAME.fullmatch(source):
            continue  # a named volume, not a path of the host
        why = _host_path_refusal(source, allowed, resolve)
        if why:
            problems.append(
                f"{variable('volumes')} mounts {why}; allowed: named volumes"
                + (f" and host paths under {', '.join(written)}" if written else "")
                + " (a pool administrator allows host paths with 'allowed_host_paths' in the "
                "job_configuration of the pool's base job template)"
            )
    if configuration.get("privileged") and configuration.get("allow_privileged") is not True:
        problems.append(
            f"{variable('privileged')} is true: a privileged container controls the host; "
            "allowed: false (a pool administrator allows it with 'allow_privileged': true in "
            "the job_configuration of the pool's base job template)"
        )
    network = str(configuration.get("network_mode") or "")
    shares = network == "host" or network.startswith("container:")
    if shares and configuration.get("allow_host_network") is not True:
        problems.append(
            f"{variable('network_mode')} is {network!r}: it shares "
            + ("the host's network" if network == "host" else "another container's network")
            + "; allowed: null (Docker's default), 'bridge', 'none' or a network's name (a pool "
            "administrator allows it with 'allow_host_network': true in the job_configuration "
            "of the pool's base job template)"
        )
    return problems


def _host_path_refusal(
    source: str, allowed: list[str], resolve: Callable[[str], str] | None
) -> str | None:
    """Why the host path `source` may not be mounted under `allowed`; None when it may."""
    if not source.startswith("/"):
        return f"{source!r}, which is neither a volume name nor an absolute path of the host"
    candidates = [posixpath.normpath(source)]
    if resolve is not None:
        candidates.append(resolve(candidates[0]))
    for path in candidates:
        socket_like = posixpath.basename(path) in _DOCKER_SOCKETS
        inside = any(
            path == root or (not socket_like and path.startswith(root.rstrip("/") + "/"))
            for root in allowed
        )
        if not inside:
            where = f" (a link to {path})" if path != candidates[0] else ""
            what = "the container engine's socket" if socket_like else "the host path"
            return f"{what} {candidates[0]!r}{where}"
    return None


def _check_host_access_keys(configuration: Mapping[str, Any]) -> None:
    """`HOST_ACCESS_KEYS` must be hard-coded and of their type: a placeholder would let a
    deployment grant itself access to the host."""
    for key in HOST_ACCESS_KEYS:
        if key not in configuration:
            continue
        value = configuration[key]
        if any(_placeholders(value, key)):
            raise InvalidInput(
                f"job_configuration.{key} must be hard-coded in the base job template, not a "
                "placeholder: a deployment must not be able to grant itself access to the host"
            )
        if key == "allowed_host_paths":
            if not isinstance(value, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in value
            ):
                raise InvalidInput(
                    "job_configuration.allowed_host_paths must be a list of absolute paths of "
                    'the host, e.g. ["/srv/data"]'
                )
        elif not isinstance(value, bool):
            raise InvalidInput(f"job_configuration.{key} must be true or false, not {value!r}")


def redact(variables: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``variables`` safe to show: secrets are replaced by ``REDACTED``.

    Secrets are the (non-null) values of variables whose schema says ``"format": "password"`` or
    ``"writeOnly": true``, and the ``env`` entries whose key contains TOKEN, SECRET, PASSWORD, KEY
    or CREDENTIAL (any case).
    """
    properties = _properties(template)
    shown: dict[str, Any] = {}
    for name, value in variables.items():
        if value is not None and _is_secret_schema(properties.get(name)):
            shown[name] = REDACTED
        elif name == "env" and isinstance(value, Mapping):
            shown[name] = {
                key: REDACTED if _is_secret_env_key(key) else copy.deepcopy(item)
                for key, item in value.items()
            }
        else:
            shown[name] = copy.deepcopy(value)
    return shown


# --- helpers -------------------------------------------------------------------------------------


def _properties(template: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = template.get("variables") if isinstance(template, Mapping) else None
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        raise InvalidInput("base job template 'variables' must have 'properties' (an object)")
    return properties


def _names(properties: Mapping[str, Any]) -> str:
    return ", ".join(sorted(properties)) or "(none)"


def _placeholders(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``(path, variable name)`` of the placeholders in a job_configuration value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _placeholders(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _placeholders(item, f"{path}[{index}]")
    elif isinstance(value, str):
        for match in _PLACEHOLDER.finditer(value):
            yield path, match.group(1)


def _pinned(template: Mapping[str, Any]) -> set[str]:
    """job_configuration keys whose value the pool hard-codes: no placeholder feeds them."""
    configuration = template.get("job_configuration")
    if not isinstance(configuration, Mapping):
        return set()
    referenced = {name for _, name in _placeholders(configuration, "")}
    return {
        key
        for key, value in configuration.items()
        if key not in referenced and not any(_placeholders(value, ""))
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
    properties = _properties(template)
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
            f"{'; '.join(problems)}; allowed variables: {_names(properties)}",
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
    properties = _properties(template)
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
        _is_secret_schema(properties.get(name))
        or (name == "env" and len(path) > 1 and _is_secret_env_key(str(path[1])))
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


def _is_secret_schema(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if schema.get("format") == "password" or schema.get("writeOnly") is True:
        return True
    # Nullable secrets are often written as anyOf [secret, null].
    return any(
        _is_secret_schema(sub)
        for keyword in ("anyOf", "oneOf", "allOf")
        for sub in schema.get(keyword, [])
    )


def _is_secret_env_key(key: str) -> bool:
    return bool(_SECRET_ENV_KEY.search(key))
