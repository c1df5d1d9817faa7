"""Redacting job variables for logs and replies: values of secret variables (by schema) and of
secret-looking environment keys are shown as `REDACTED`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from nbflows.workers.placeholders import declared_variables

__all__ = ["REDACTED", "SECRET_ENV_WORDS", "redact"]

#: What a secret is replaced by wherever variables are shown (API, dashboard, logs).
REDACTED = "********"

#: An ``env`` entry whose key contains one of these words (any case) is treated as a secret.
SECRET_ENV_WORDS: tuple[str, ...] = ("TOKEN", "SECRET", "PASSWORD", "KEY", "CREDENTIAL")
_SECRET_ENV_KEY = re.compile("|".join(SECRET_ENV_WORDS), re.IGNORECASE)


def redact(variables: Mapping[str, Any], template: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``variables`` safe to show: secrets are replaced by ``REDACTED``.

    Secrets are the (non-null) values of variables whose schema says ``"format": "password"`` or
    ``"writeOnly": true``, and the ``env`` entries whose key contains TOKEN, SECRET, PASSWORD, KEY
    or CREDENTIAL (any case).
    """
    properties = declared_variables(template)
    shown: dict[str, Any] = {}
    for name, value in variables.items():
        if value is not None and is_secret_schema(properties.get(name)):
            shown[name] = REDACTED
        elif name == "env" and isinstance(value, Mapping):
            shown[name] = {
                key: REDACTED if is_secret_env_key(key) else copy.deepcopy(item)
                for key, item in value.items()
            }
        else:
            shown[name] = copy.deepcopy(value)
    return shown


def is_secret_schema(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if schema.get("format") == "password" or schema.get("writeOnly") is True:
        return True
    # Nullable secrets are often written as anyOf [secret, null].
    return any(
        is_secret_schema(sub)
        for keyword in ("anyOf", "oneOf", "allOf")
        for sub in schema.get(keyword, [])
    )


def is_secret_env_key(key: str) -> bool:
    return bool(_SECRET_ENV_KEY.search(key))
