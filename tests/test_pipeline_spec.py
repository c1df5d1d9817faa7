"""A pipeline's definition checked before anything is stored: DAG, references, fan-out; the
Python builder's wire form; what a repair re-runs; the DAG picture."""

from __future__ import annotations

from typing import Any

import pytest

from nbflows.errors import InvalidInput
from nbflows.pipelines import Pipeline
from nbflows.pipelines.picture import render_svg
from nbflows.pipelines.repair import downstream_of
from nbflows.pipelines.spec import parse_pipeline, topological_order


def step(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "notebook": f"{name}.ipynb", "pool": "p", **extra}


def out(ref: str) -> dict[str, str]:
    return {"$output": ref}


def test_dependencies_come_from_after_and_from_output_references() -> None:
    spec = parse_pipeline(
        {
            "name": "p",
            "steps": [
                step("report", parameters={"x": out("clean.path")}),
                step("clean", after=["ingest"]),
                step("ingest"),
            ],
        }
    )
    assert topological_order(spec) == ["ingest", "clean", "report"]
    assert downstream_of(spec, {"clean"}) == {"clean", "report"}


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        (
            [step("a", after=["b"]), step("b", parameters={"x": out("a.y")})],
            ["cycle", "a -> b -> a"],
        ),
        ([step("a", after=["zz"])], ["after 'zz': no such step"]),
        ([step("a", parameters={"x": out("b")}), step("b")], ["'STEP.OUTPUT'"]),
        ([step("a", parameters={"x": out("a.y")})], ["its own output"]),
        ([step("a"), step("a")], ["two steps are named 'a'"]),
        ([step("a.b")], ["not a valid name"]),
        ([step("a", run_if="sometimes")], ["run_if"]),
        ([step("a", map={"r": [1, 2], "s": [1]})], ["equally long"]),
        ([step("a", map={"r": []})], ["empty list"]),
        ([step("a", map={"r": [1]}, parameters={"r": 2})], ["both by map and by parameters"]),
        ([step("a", parameters={"x": {"$param": "nope"}})], ["pipeline parameter 'nope'"]),
        ([step("a", parameters={"x": {"$output": "b.c", "more": 1}}), step("b")], ["alone"]),
        ([step("a", colour="red")], ["unknown field", "run_if"]),
    ],
)
def test_a_pipeline_that_is_not_a_valid_dag_is_refused_saying_why(
    steps: list[dict[str, Any]], words: list[str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_pipeline({"name": "p", "steps": steps})
    for word in words:
        assert word in caught.value.message, caught.value.message


def test_the_python_builder_makes_the_wire_form() -> None:
    p = Pipeline("sales", parameters={"day": "2026-01-01"})
    ingest = p.step("/nb/ingest.ipynb", pool="cpu", parameters={"day": p.param("day")})
    fetch = p.step("/nb/fetch.ipynb", pool="io", after=[ingest], retries=2).map(region=["eu", "us"])
    p.step(
        "/nb/report.ipynb:summarize",
        name="report",
        pool="cpu",
        run_if="always",
        parameters={"rows": fetch.output("rows")},
    )
    wire = p.to_json()
    spec = parse_pipeline(wire)
    assert [s.name for s in spec.steps] == ["ingest", "fetch", "report"]
    assert wire["steps"][0]["parameters"] == {"day": {"$param": "day"}}
    assert wire["steps"][1]["map"] == {"region": ["eu", "us"]} and wire["steps"][1]["after"] == [
        "ingest"
    ]
    assert (
        wire["steps"][2]["flow"] == "summarize"
        and wire["steps"][2]["notebook"] == "/nb/report.ipynb"
    )
    assert spec.step("fetch").label(1) == "fetch[us]"
    with pytest.raises(InvalidInput, match="no parameter 'night'"):
        p.param("night")


def test_the_picture_colours_each_step_by_its_state_and_escapes_names() -> None:
    graph = {
        "flow_run": {"flow_name": "p<1>", "name": "r", "state": {"type": "RUNNING"}},
        "steps": [{"name": "a"}, {"name": "b"}],
        "edges": [["a", "b"]],
        "step_runs": [
            {"step": "a", "item": 0, "label": "a[<x>]", "state": "COMPLETED"},
            {"step": "a", "item": 1, "label": "a[y]", "state": "FAILED"},
            {"step": "b", "item": 0, "label": "b", "state": "WAITING"},
        ],
    }
    svg = render_svg(graph)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert (
        'data-step="a" data-state="FAILED"' in svg and 'data-step="b" data-state="WAITING"' in svg
    )
    assert "<x>" not in svg and "&lt;x&gt;" in svg and "p&lt;1&gt;" in svg
    assert "marker-end" in svg  # the edge a -> b
