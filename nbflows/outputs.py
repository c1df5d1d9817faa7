"""Run outputs: named JSON values a run records with `nbflows.output(name, value)`.

Later pipeline steps take them as parameters (`ingest.output("path")`), so a value must be what a
parameter can be: JSON without NaN or infinities, within the size limit of parameters. This
module only checks; it imports nothing heavy, so the kernel checks a value before sending it and
the server checks it again before storing it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import InvalidInput, TooLarge

__all__ = ["MAX_OUTPUT_SIZE", "OUTPUT_NAME", "check_output", "output_text"]

#: An output's name: what a parameter or a Python name can be, so it reads well as a reference.
OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
#: Bytes of one output as JSON, when the server's own limit is not known (the kernel's check):
#: the default `max_parameters_size`, since an output may become a parameter.
MAX_OUTPUT_SIZE = 1024 * 1024


def output_text(name: str, value: Any, max_size: int = MAX_OUTPUT_SIZE) -> str:
    """The value as JSON text once `name` and `value` are known to be fine (see `check_output`)."""
    if not isinstance(name, str) or not OUTPUT_NAME.match(name):
        raise InvalidInput(
            f"output name {name!r} is not valid: use a letter or _ first, then letters, digits, "
            "_ . or - (at most 100 characters), e.g. 'row_count'"
        )
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        raise InvalidInput(
            f"output {name!r} holds NaN or an infinity, which JSON cannot hold; record a finite "
            "number or None"
        ) from None
    except TypeError as exc:
        raise InvalidInput(
            f"output {name!r} must be JSON-serialisable (str, int, float, bool, None, lists and "
            f"dicts of them): {exc}. Convert it first, e.g. df.to_dict('records') or str(path)"
        ) from None
    if len(text) > max_size:
        raise TooLarge(
            f"output {name!r} is {len(text)} bytes as JSON; at most {max_size} bytes (the server's "
            "max_parameters_size, since an output may become a later step's parameter). Record a "
            "path or a summary instead",
            limit="max_parameters_size",
        )
    return text


def check_output(name: str, value: Any, max_size: int = MAX_OUTPUT_SIZE) -> None:
    """Raise `InvalidInput` (or `TooLarge`) unless `value` may be recorded as output `name`."""
    output_text(name, value, max_size)
