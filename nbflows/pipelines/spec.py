"""A pipeline's definition: its steps, their references, and the checks that make it a DAG.

The wire form (what `Pipeline.deploy`, a YAML/TOML file and the API all produce) is::

    {"name": "sales",
     "parameters": {"day": "2026-01-01"},
     "steps": [{"name": "ingest", "notebook": "ingest.ipynb", "flow": null, "pool": "cpu",
                "parameters": {"day": {"$param": "day"}}, "after": [], "retries": 0,
                "retry_delay": 0, "run_if": "all_succeeded", "map": {"region": ["eu", "us"]}},
               {"name": "report", "notebook": "report.ipynb", "pool": "cpu",
                "parameters": {"paths": {"$output": "ingest.path"}}}]}

A parameter value `{"$output": "STEP.NAME"}` is the output NAME the step STEP recorded (a list,
in item order, when STEP fans out with `map`); `{"$param": "NAME"}` is a pipeline parameter.
A step depends on the steps it names in `after` and on those it takes outputs from.
Everything here is checked before anything is stored: a refused pipeline creates nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbflows.errors import InvalidInput

__all__ = [
    "RUN_IF",
    "PipelineSpec",
    "StepSpec",
    "output_refs",
    "parse_pipeline",
    "pipeline_json",
    "reference",
    "step_dependencies",
    "topological_order",
]

#: When a step runs, judged on its upstream steps once all of them have ended.
RUN_IF = ("all_succeeded", "any_failed", "always")
#: Step names are used in references (`STEP.OUTPUT`), so they hold no dot.
STEP_NAME = r"^[A-Za-z_][A-Za-z0-9_\-]{0,99}$"
PIPELINE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
MAX_STEPS = 200
MAX_ITEMS = 1000

OUTPUT_REF = "$output"
PARAM_REF = "$param"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StepSpec(_Model):
    name: str = Field(pattern=STEP_NAME)
    notebook: str = Field(min_length=1)
    #: A `%%flow` cell of the notebook; None runs the whole notebook.
    flow: str | None = Field(default=None, min_length=1)
    pool: str = Field(min_length=1)
    queue: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay: float = Field(default=0.0, ge=0)
    run_if: Literal["all_succeeded", "any_failed", "always"] = "all_succeeded"
    #: Fan-out: one run per position of these equally long lists, each given its value.
    map: dict[str, list[Any]] | None = None

    def items(self) -> int:
        """How many runs this step makes (1 unless it fans out)."""
        return len(next(iter(self.map.values()))) if self.map else 1

    def item_parameters(self, item: int) -> dict[str, Any]:
        """The values of `map` for run number `item`."""
        return {key: values[item] for key, values in (self.map or {}).items()}

    def label(self, item: int) -> str:
        """How run `item` is called: the step's name, with its map values when it fans out."""
        if self.map is None:
            return self.name
        return f"{self.name}[{', '.join(str(v) for v in self.item_parameters(item).values())}]"


class PipelineSpec(_Model):
    name: str = Field(pattern=PIPELINE_NAME)
    parameters: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.steps if s.name == name)


def reference(value: Any) -> tuple[str, str] | None:
    """("output", "STEP.NAME") or ("param", "NAME") for a reference, None for a plain value."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, target),) = value.items()
        if key == OUTPUT_REF and isinstance(target, str):
            return "output", target
        if key == PARAM_REF and isinstance(target, str):
            return "param", target
    return None


def output_refs(step: StepSpec) -> Iterator[tuple[str, str, str]]:
    """(parameter, upstream step, output name) for each output reference of `step`."""
    for param, value in step.parameters.items():
        ref = reference(value)
        if ref is not None and ref[0] == "output":
            upstream, _, output = ref[1].partition(".")
            yield param, upstream, output


def step_dependencies(step: StepSpec) -> list[str]:
    """The steps `step` waits for: its `after` and the steps whose outputs it takes."""
    return list(dict.fromkeys([*step.after, *(up for _, up, _ in output_refs(step))]))


def parse_pipeline(data: Any) -> PipelineSpec:
    """The checked pipeline, or `InvalidInput` saying everything that is wrong with it."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"a pipeline must be an object with 'name' and 'steps', not {data!r}")
    _refuse_nul(data)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = _where(data, e["loc"])
            if e["type"] == "extra_forbidden":
                in_step = len(e["loc"]) > 2 and e["loc"][0] == "steps"
                fields = StepSpec.model_fields if in_step else PipelineSpec.model_fields
                problems.append(f"{where}: unknown field (allowed: {', '.join(fields)})")
            elif e["type"] == "string_pattern_mismatch":
                problems.append(
                    f"{where}: {e['input']!r} is not a valid name (letters, digits, _ and -; "
                    "a step name holds no dot)"
                )
            else:
                problems.append(f"{where}: {e['msg']}")
        raise InvalidInput("invalid pipeline: " + "; ".join(problems)) from None
    _check(spec)
    return spec


def _refuse_nul(data: Any) -> None:
    # Names and paths go into SQL and file system calls, where a NUL character cannot go.
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise InvalidInput("invalid pipeline: a text holds a NUL character (\\u0000)")
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    # "steps.1.pool" reads better as "step 'report': pool".
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") if isinstance(data, Mapping) else None
        name = None
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], Mapping):
            name = steps[loc[1]].get("name")
        head = f"step {name!r}" if isinstance(name, str) else f"step #{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"{head}: {rest}" if rest else head
    return ".".join(str(p) for p in loc) or "pipeline"


def _check(spec: PipelineSpec) -> None:
    problems: list[str] = []
    names = [s.name for s in spec.steps]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"two steps are named {name!r}; step names must be unique")
        seen.add(name)
    known = ", ".join(names)
    for step in spec.steps:
        for up in step.after:
            if up not in seen:
                problems.append(f"step {step.name!r}: after {up!r}: no such step (steps: {known})")
        for param, value in step.parameters.items():
            ref = reference(value)
            if ref is None:
                if isinstance(value, Mapping) and (OUTPUT_REF in value or PARAM_REF in value):
                    problems.append(
                        f"step {step.name!r}: parameter {param!r}: a reference is "
                        '{"$output": "STEP.NAME"} or {"$param": "NAME"} alone'
                    )
                continue
            kind, target = ref
            if kind == "param" and target not in spec.parameters:
                valid = ", ".join(spec.parameters) or "none"
                problems.append(
                    f"step {step.name!r}: parameter {param!r} refers to pipeline parameter "
                    f"{target!r}, which the pipeline does not define (its parameters: {valid})"
                )
            if kind == "output":
                upstream, dot, output = target.partition(".")
                if not dot or not output:
                    problems.append(
                        f"step {step.name!r}: parameter {param!r}: output reference {target!r} "
                        "must be 'STEP.OUTPUT', e.g. 'ingest.path'"
                    )
                elif upstream not in seen:
                    problems.append(
                        f"step {step.name!r}: parameter {param!r} refers to output {output!r} of "
                        f"step {upstream!r}, which does not exist (steps: {known})"
                    )
                elif upstream == step.name:
                    problems.append(f"step {step.name!r} cannot take its own output {output!r}")
        if step.map is not None:
            problems.extend(_map_problems(step))
    if problems:
        raise InvalidInput("invalid pipeline: " + "; ".join(problems), problems=problems)
    topological_order(spec)


def _map_problems(step: StepSpec) -> list[str]:
    problems = []
    lengths = {len(values) for values in (step.map or {}).values()}
    if not step.map:
        problems.append(f"step {step.name!r}: map needs at least one parameter and its values")
    elif 0 in lengths:
        problems.append(f"step {step.name!r}: map over an empty list makes no run")
    elif len(lengths) > 1:
        problems.append(
            f"step {step.name!r}: the lists of map must be equally long (one run per position), "
            f"not of lengths {sorted(lengths)}"
        )
    elif max(lengths) > MAX_ITEMS:
        problems.append(f"step {step.name!r}: map makes at most {MAX_ITEMS} runs")
    for key in step.map or {}:
        if key in step.parameters:
            problems.append(
                f"step {step.name!r}: parameter {key!r} is set both by map and by parameters"
            )
    return problems


def topological_order(spec: PipelineSpec) -> list[str]:
    """Step names, each after the steps it depends on; `InvalidInput` naming a cycle if any."""
    deps = {s.name: step_dependencies(s) for s in spec.steps}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in deps:
        if state.get(start) == 2:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(deps[start]))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
            elif state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                raise InvalidInput(
                    "invalid pipeline: its steps depend on each other in a cycle: "
                    + " -> ".join(reversed(cycle))
                    + " (through after= or output references); a pipeline must be a DAG",
                    cycle=cycle,
                )
            elif state.get(child) != 2:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(deps[child])))
    return order


def pipeline_json(spec: PipelineSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
