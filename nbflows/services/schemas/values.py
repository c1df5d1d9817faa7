"""The value types of the wire models: JSON checked for depth, size and NUL characters
(`load_json`, `check_json`), bounded numbers, names, timestamps and the other constrained
fields the bodies, queries and replies share.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
)

from nbflows.errors import BadRequest, InvalidInput
from nbflows.protocol import StateType

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
#: A run is named `<flow name>-<6 hex digits>` in a 200-character column.
MAX_FLOW_NAME = 193

#: Integer fields are stored in SQL INTEGER columns: signed 32-bit on PostgreSQL.
MIN_INT, MAX_INT = -(2**31), 2**31 - 1
#: Offsets and log line ids (SQL BIGINT, and OFFSET): signed 64-bit.
MAX_BIGINT = 2**63 - 1
#: How deep a request body may nest: real bodies nest a few levels (a notebook output, ten);
#: much deeper ones only exhaust the recursion of the code that reads them.
MAX_DEPTH = 100

_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(raw: bytes | bytearray | str) -> Any:
    """Parse a request body, refusing what JSON, the store or a browser cannot hold.

    Raises `BadRequest` for text that is not JSON or nests deeper than `MAX_DEPTH`, and
    `InvalidInput` naming where the body holds NaN or an infinity, or a lone UTF-16 surrogate.
    An empty body is `{}`. (Integer fields are bounded by their models to what their columns
    hold; integers inside free JSON values such as parameters are kept as they are.)
    """
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest(_TOO_DEEP) from None
    except ValueError as err:
        raise BadRequest(f"the request body is not valid JSON: {err}") from None
    check_json(data)
    return data


_TOO_DEEP = f"the request body is nested too deep: at most {MAX_DEPTH} levels of arrays and objects"


def check_json(data: Any) -> None:
    """Raise for the first value of `data` that `load_json` refuses (see there)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(
                    f"{where or 'body'}: {value} is not a finite number (NaN and infinities "
                    "are not JSON); give a finite number"
                )
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                raise BadRequest(_TOO_DEEP)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, f"a key in {where or 'the body'}")
                inner = f"{where}.{key}" if where else str(key)
                stack.append((item, inner, depth + 1))


def _check_text(text: str, where: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        raise InvalidInput(
            f"{where or 'the body'}: a lone UTF-16 surrogate (\\u{ord(found.group()):04x}) is not "
            "Unicode text; send UTF-8 text (surrogates only in valid pairs)"
        )


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    return value


#: Text kept in a text column, where a NUL character cannot go.
Text = Annotated[
    str, AfterValidator(_refuse_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
]


def _number(value: Any) -> Any:
    # JSON numbers only: pydantic alone would also take "3" or true for a number.
    if isinstance(value, (str, bool)):
        raise ValueError(f"must be a number, not {type(value).__name__}")
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, (str, datetime)):
        raise ValueError("must be an ISO 8601 timestamp (text)")
    return value


#: Any JSON object.
JSONObject = dict[str, Any]
#: A JSON integer or number (not text, not a boolean).
Int = Annotated[int, BeforeValidator(_number)]
Float = Annotated[float, BeforeValidator(_number)]
#: A point in time, given as ISO 8601 text.
Moment = Annotated[datetime, BeforeValidator(_timestamp)]
#: A name of a pool, queue or deployment.
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
#: A count, limit or priority: 0 or more, within 32 bits.
# (Constraints before the validator, so that the JSON schema shows them as minimum/maximum.)
Count = Annotated[int, Field(ge=0, le=MAX_INT), BeforeValidator(_number)]
#: A claim's fencing token.
Fence = Annotated[int, Field(ge=MIN_INT, le=MAX_INT), BeforeValidator(_number)]
Priority = Annotated[int, Field(ge=1, le=MAX_INT), BeforeValidator(_number)]
#: Seconds: finite and not negative.
Seconds = Annotated[float, Field(ge=0), BeforeValidator(_number)]
Catchup = Literal["all", "latest", "skip"]


#: State types as the API spells them.
STATE_NAMES = [state.value for state in StateType]
STATE_NAMES_PATTERN = "|".join(STATE_NAMES)


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged() -> Any:
    """The default of an update's field that may be left out but not be null."""
    return Field(default=None, json_schema_extra=_no_default)


def iso(value: datetime | None) -> str | None:
    """A stored moment as the API writes it (ISO 8601), or None."""
    return value.isoformat() if value is not None else None
