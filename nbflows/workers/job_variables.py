"""The job variables of the built-in pool types (process, docker): their JSON schemas, which a
pool's base job template declares and the CLI, the dashboard and the widgets show.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMMON_VARIABLES", "DOCKER_VARIABLES", "PROCESS_VARIABLES"]


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
