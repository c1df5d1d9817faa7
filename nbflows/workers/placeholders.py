"""The parts of a base job template every check reads: its placeholders (`"{{ name }}"` values of
the job_configuration) and its declared variables (the `variables` schema's properties).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from nbflows.errors import InvalidInput

# A placeholder is "{{ name }}"; the inner text is captured loosely so that a malformed one
# such as "{{ flow_run.id }}" is reported instead of silently left in the configuration.
PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")


# --- helpers -------------------------------------------------------------------------------------


def declared_variables(template: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = template.get("variables") if isinstance(template, Mapping) else None
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(properties, Mapping):
        raise InvalidInput("base job template 'variables' must have 'properties' (an object)")
    return properties


def variable_names(properties: Mapping[str, Any]) -> str:
    return ", ".join(sorted(properties)) or "(none)"


def placeholders(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every ``(path, variable name)`` of the placeholders in a job_configuration value."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from placeholders(item, f"{path}[{index}]")
    elif isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            yield path, match.group(1)
