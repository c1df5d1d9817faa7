"""The base of every response body (`Reply`): a pydantic model that is both the route's declared
response schema (`nbflows.extension.api`) and, through `build`, the serialiser of its resource.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: An ISO 8601 timestamp with its UTC offset.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class Reply(BaseModel):
    """A response body. Fields beyond the declared ones may be added in later versions."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def build(cls, **fields: Any) -> dict[str, Any]:
        """This reply as a JSON object: exactly its declared fields, in their declared order.

        Not validated here (list pages stay fast): the server checks what it answers against
        the same model. A field left out or not declared is a bug, said at once."""
        declared = cls.model_fields
        unknown = sorted(fields.keys() - declared.keys())
        missing = sorted(declared.keys() - fields.keys())
        if unknown or missing:
            raise TypeError(f"{cls.__name__}: undeclared fields {unknown}, missing {missing}")
        return {name: fields[name] for name in declared}
