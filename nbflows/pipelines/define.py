"""Defining a pipeline in Python, in a notebook or anywhere: `Pipeline`, its steps, references.

    from nbflows import Pipeline
    p = Pipeline("sales", parameters={"day": "2026-01-01"})
    ingest = p.step("ingest.ipynb", pool="cpu", parameters={"day": p.param("day")})
    fetch = p.step("fetch.ipynb", pool="io").map(region=["eu", "us", "apac"])
    report = p.step("report.ipynb", pool="cpu",
                    parameters={"path": ingest.output("path"), "counts": fetch.output("rows")})
    p.deploy(name="nightly", cron="0 6 * * *")

Nothing here talks to the server but `deploy`, which sends the same request as
`nbflows deploy pipeline.yaml`; the server checks everything (cycles, references, pools,
parameters) before it creates anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from nbflows.errors import InvalidInput

from .spec import OUTPUT_REF, PARAM_REF

__all__ = ["OutputRef", "ParamRef", "Pipeline", "Step"]


class OutputRef(dict[str, str]):
    """`step.output("name")`: the output a step records, as a later step's parameter."""

    def __init__(self, step: str, name: str) -> None:
        super().__init__({OUTPUT_REF: f"{step}.{name}"})


class ParamRef(dict[str, str]):
    """`pipeline.param("name")`: a pipeline parameter, as a step's parameter."""

    def __init__(self, name: str) -> None:
        super().__init__({PARAM_REF: name})


class Step:
    """One step of a `Pipeline` (made by `Pipeline.step`)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def output(self, name: str) -> OutputRef:
        """The output `name` this step records; a list of them when the step fans out."""
        return OutputRef(self.name, name)

    def map(self, **values: Iterable[Any]) -> Step:
        """Fan out: one run of this step per value (several lists go in step, by position)."""
        self.spec["map"] = {key: list(items) for key, items in values.items()}
        return self

    def __repr__(self) -> str:
        return f"Step({self.name!r})"


class Pipeline:
    """A DAG of notebook (or `%%flow` cell) steps, deployed and scheduled like a flow."""

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.parameters = dict(parameters or {})
        self.steps: list[Step] = []

    def param(self, name: str) -> ParamRef:
        """The pipeline parameter `name`, to pass on to a step."""
        if name not in self.parameters:
            valid = ", ".join(self.parameters) or "none"
            raise InvalidInput(
                f"pipeline {self.name!r} has no parameter {name!r} (its parameters: {valid})"
            )
        return ParamRef(name)

    def step(
        self,
        notebook_or_flow: Any,
        *,
        pool: str,
        name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        after: Iterable[Step | str] = (),
        retries: int = 0,
        retry_delay: float = 0.0,
        run_if: str = "all_succeeded",
        queue: str | None = None,
    ) -> Step:
        """Add a step: a notebook path (run whole) or a `%%flow` cell's Flow object.

        Its `parameters` may hold `other_step.output("name")` and `pipeline.param("name")`;
        those steps run first, as do the ones in `after`. `run_if` is "all_succeeded",
        "any_failed" or "always" (judged on the upstream steps once they ended).
        """
        notebook, flow = _entrypoint(notebook_or_flow)
        spec: dict[str, Any] = {
            "name": name or flow or Path(notebook).stem.replace(".", "_").replace(" ", "_"),
            "notebook": notebook,
            "flow": flow,
            "pool": pool,
            "queue": queue,
            "parameters": dict(parameters or {}),
            "after": [a.name if isinstance(a, Step) else str(a) for a in after],
            "retries": retries,
            "retry_delay": retry_delay,
            "run_if": run_if,
            "map": None,
        }
        step = Step(spec)
        self.steps.append(step)
        return step

    def to_json(self) -> dict[str, Any]:
        """The pipeline as the API takes it (see `nbflows.pipelines.spec`)."""
        return {
            "name": self.name,
            "parameters": self.parameters,
            "steps": [_plain(step.spec) for step in self.steps],
        }

    def deploy(
        self,
        name: str,
        *,
        cron: str | None = None,
        interval: float | timedelta | None = None,
        rrule: str | None = None,
        timezone: str | None = None,
        schedules: list[Any] | None = None,
        parameters: Mapping[str, Any] | None = None,
        paused: bool = False,
        tags: list[str] | None = None,
        description: str | None = None,
        client: Any = None,
    ) -> dict[str, Any]:
        """Deploy as `PIPELINE/name` (each step frozen as a deployment of its own); returns the
        pipeline's deployment. Run it with `nbflows deployment run PIPELINE/name`."""
        from nbflows.client.rest import get_client
        from nbflows.scheduling.schedules import make_schedule, parse_schedule, schedule_to_dict

        chosen = [schedule_to_dict(parse_schedule(s)) for s in schedules or []]
        if cron is not None or interval is not None or rrule is not None:
            schedule = make_schedule(cron=cron, interval=interval, rrule=rrule, timezone=timezone)
            chosen.append(schedule_to_dict(schedule))
        client = client or get_client()
        return client.deploy_pipeline(
            name=name,
            pipeline=self.to_json(),
            parameters=dict(parameters or {}),
            schedules=chosen,
            paused=paused,
            tags=list(tags or []),
            description=description,
        )

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={[s.name for s in self.steps]})"


def _entrypoint(notebook_or_flow: Any) -> tuple[str, str | None]:
    """(notebook path, flow name or None) of a step's code."""
    if isinstance(notebook_or_flow, (str, os.PathLike)):
        path = str(notebook_or_flow)
        if ":" in path and path.rpartition(":")[0].endswith(".ipynb"):
            path, _, flow = path.rpartition(":")
            return str(Path(path).expanduser().resolve()), flow
        return str(Path(path).expanduser().resolve()), None
    flow_name = getattr(notebook_or_flow, "name", None)
    if isinstance(flow_name, str) and hasattr(notebook_or_flow, "deploy"):
        from nbflows.client.context import current_context

        notebook = current_context().notebook_path
        if notebook is None:
            raise InvalidInput(
                f"cannot tell which notebook flow {flow_name!r} is in (JPY_SESSION_NAME is not "
                f"set); give the path instead: 'NOTEBOOK.ipynb:{flow_name}'"
            )
        return notebook, flow_name
    raise InvalidInput(
        f"a step is a notebook path or a %%flow cell's Flow object, not {notebook_or_flow!r}"
    )


def _plain(value: Any) -> Any:
    # References are dict subclasses: the wire form is plain JSON.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
