"""`nbflows.output(name, value)`: record a named JSON value on the run this code runs in.

In a `%%flow` cell it is that flow run (the innermost one); in a notebook a worker runs it is
the worker's run (or the `%%flow` child run around the call). Later pipeline steps take it as
a parameter (`step.output(name)`). The value is checked here, before anything is sent: JSON only,
no NaN, within the size of a parameter.
"""

from __future__ import annotations

from typing import Any

from nbflows.client.context import current_context
from nbflows.errors import InvalidInput
from nbflows.kernel_magics.reporting import get_reporter
from nbflows.outputs import check_output

__all__ = ["output"]


def output(name: str, value: Any) -> None:
    """Record `value` (JSON: str, number, bool, None, lists and dicts) as output `name` of the
    current run; recording the same name again replaces it. Raises `InvalidInput` for a value
    that is not JSON, holds NaN, or is too large, and outside any run."""
    from nbflows.kernel_magics.flow import current_run

    check_output(name, value)
    run = current_run()
    context = current_context()
    if run is None and not context.headless:
        raise InvalidInput(
            "nbflows.output() records on a run: call it inside a %%flow cell, or in a notebook "
            "a worker runs (a deployment's run)"
        )
    if run is not None:
        run.outputs[name] = value
    reporter = get_reporter(context)
    record = getattr(reporter, "output", None)  # reporters set by tests may not record outputs
    if record is not None:
        record(run, name, value)
