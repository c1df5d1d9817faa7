"""Wire models of exports: what a worker sends with the export it made of a run it holds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from nbflows.services.schemas import MAX_INT, MIN_INT, Query, QueryText


class ExportStoreQuery(Query):
    worker: QueryText = Field(
        max_length=200,
        description="The worker sending it (refused unless it holds the run): only workers "
        "send exports, after the runs they made.",
    )
    fence: Annotated[int, Field(ge=MIN_INT, le=MAX_INT)] | None = Field(
        default=None, description="The fencing token of the worker's claim."
    )
