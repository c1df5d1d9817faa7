"""Pipelines as a user runs them: a YAML file deployed with the CLI, a run with a failing
step, its repair, run-if, outputs passed from step to step; refused pipelines creating nothing;
a pipeline defined in Python in a real kernel; the tutorial's two notebooks joined by a pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.journeys.conftest import Journey

DATA = Path(__file__).parents[1] / "data" / "pipeline"
#: Where the DAG picture and the repaired run's printed state are kept for the closing note
#: (outside the repository); set NBFLOWS_PIPELINE_ARTIFACTS to keep them.
ARTIFACTS = os.environ.get("NBFLOWS_PIPELINE_ARTIFACTS")


def setup_project(journey: Journey, *pools: str) -> Path:
    """The test notebooks and pipeline file in the user's folder, and their process pools."""
    folder = journey.root / "pipeline"
    shutil.copytree(DATA, folder)
    for pool in pools:
        journey.cli("work-pool", "create", pool, "--type", "process", check=True)
    return folder


def run_id_of(stdout: str) -> str:
    return stdout.split("UUID: ")[1].split()[0]


def steps_of(journey: Journey, run_id: str) -> dict[str, dict[str, Any]]:
    graph = json.loads(journey.cli("flow-run", "steps", run_id, "-o", "json", check=True).stdout)
    return {sr["label"]: sr for sr in graph["step_runs"]}


def child(journey: Journey, run_id: str) -> dict[str, Any]:
    return json.loads(journey.cli("flow-run", "inspect", run_id, "-o", "json", check=True).stdout)


@pytest.mark.slow
def test_a_yaml_pipeline_fails_at_a_step_and_is_repaired(journey: Journey, tmp_path: Path) -> None:
    journey.start()
    folder = setup_project(journey, "cpu", "io")
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "fail-us").touch()  # fetch[us] fails until the flag is gone

    deployed = journey.cli("deploy", str(folder / "sales.yaml"), "--name", "nightly", check=True)
    assert "Pipeline 'sales/nightly' successfully created" in deployed.stdout, deployed.stdout

    first = journey.cli(
        "deployment", "run", "sales/nightly", "--param", f"flag_dir={flags}", "--watch"
    )
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Failed" in first.stdout and "fetch[us]" in first.stdout, first.stdout
    run_id = run_id_of(first.stdout)
    before = steps_of(journey, run_id)
    assert {k: v["state"] for k, v in before.items()} == {
        "ingest": "COMPLETED",
        "fetch[eu]": "COMPLETED",
        "fetch[us]": "FAILED",
        "fetch[apac]": "COMPLETED",
        "report": "SKIPPED",
        "publish": "SKIPPED",
        "alert": "COMPLETED",  # run_if any_failed
    }
    assert "fetching us failed" in before["fetch[us]"]["message"]
    assert "run_if all_succeeded" in before["report"]["message"]
    # Each step ran on its own pool, as a child of the pipeline run, with its outputs recorded.
    ingest = child(journey, before["ingest"]["flow_run_id"])
    assert ingest["work_pool_name"] == "cpu" and ingest["parent_run_id"] == run_id
    assert ingest["outputs"] == {"path": "data/ingested-5.csv", "rows": 5}
    assert child(journey, before["fetch[eu]"]["flow_run_id"])["work_pool_name"] == "io"

    (flags / "fail-us").unlink()
    repaired = journey.cli("flow-run", "repair", run_id, "--watch")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    after = steps_of(journey, run_id)
    assert {k: v["state"] for k, v in after.items()} == {
        "ingest": "COMPLETED",
        "fetch[eu]": "COMPLETED",
        "fetch[us]": "COMPLETED",
        "fetch[apac]": "COMPLETED",
        "report": "COMPLETED",
        "publish": "COMPLETED",
        "alert": "SKIPPED",  # nothing failed this time
    }
    # What succeeded was reused (same runs), what failed ran again.
    for label in ("ingest", "fetch[eu]", "fetch[apac]"):
        assert after[label]["flow_run_id"] == before[label]["flow_run_id"], label
    assert after["fetch[us]"]["flow_run_id"] != before["fetch[us]"]["flow_run_id"]
    # Outputs went along: ingest's path and the three counts (fan-in, in map order) to report.
    report = child(journey, after["report"]["flow_run_id"])
    assert report["parameters"] == {"path": "data/ingested-5.csv", "counts": [20, 20, 40]}
    assert after["report"]["outputs"] == {"total": 80, "source": "data/ingested-5.csv"}
    assert after["publish"]["outputs"] == {"published": "total=80"}
    run = child(journey, run_id)
    assert run["state"]["type"] == "COMPLETED" and run["attempt"] == 2

    picture = journey.cli("flow-run", "steps", run_id, "--svg", str(tmp_path / "dag.svg"))
    svg = (tmp_path / "dag.svg").read_text()
    assert svg.startswith("<svg") and 'data-step="fetch"' in svg and "COMPLETED" in svg
    page = journey.http("GET", f"../runs/{run_id}")
    assert page.status_code == 200 and 'class="nbflows-dag"' in page.text
    assert "Repair run" not in page.text  # a completed run has nothing to repair
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "dag.svg", Path(ARTIFACTS) / "sales-repaired-dag.svg")
        (Path(ARTIFACTS) / "repaired-run.txt").write_text(
            first.stdout
            + "\n$ nbflows flow-run repair --watch\n"
            + repaired.stdout
            + "\n$ nbflows flow-run steps\n"
            + picture.stdout
        )


def deployments(journey: Journey) -> list[str]:
    listed = journey.http("GET", "deployments").json()
    return sorted(d["full_name"] for d in listed)


@pytest.mark.slow
def test_refused_pipelines_create_nothing_and_a_missing_output_fails_its_step(
    journey: Journey,
) -> None:
    journey.start()
    folder = setup_project(journey, "cpu")
    nb = str(folder / "ingest.ipynb")
    report = str(folder / "report.ipynb")

    def refused(pipeline: dict[str, Any], *words: str) -> None:
        response = journey.http("POST", "pipelines", json={"name": "n", "pipeline": pipeline})
        assert response.status_code == 422, response.text
        message = response.json()["message"]
        for word in words:
            assert word in message, message
        assert deployments(journey) == []

    step = {"name": "a", "notebook": nb, "pool": "cpu"}
    refused(
        {"name": "p", "steps": [{**step, "after": ["b"]}, {**step, "name": "b", "after": ["a"]}]},
        "cycle",
        "a -> b -> a",
    )
    refused(
        {"name": "p", "steps": [{**step, "parameters": {"rows": {"$output": "nope.x"}}}]},
        "'nope'",
        "does not exist",
    )
    refused({"name": "p", "steps": [{**step, "pool": "gpu"}]}, "no work pool 'gpu'", "cpu")
    refused({"name": "p", "steps": [{**step, "parameters": {"colour": 1}}]}, "colour", "rows")
    # The second step is refused after the first was deployed: the first is gone with it.
    refused(
        {"name": "p", "steps": [step, {**step, "name": "b", "notebook": str(folder / "no.ipynb")}]},
        "step 'b'",
    )
    refused(
        {"name": "p", "steps": [{**step, "parameters": {"rows": {"$param": "size"}}}]},
        "'size'",
    )

    missing = {
        "name": "broken",
        "steps": [
            step,
            {
                "name": "r",
                "notebook": report,
                "pool": "cpu",
                "parameters": {"path": {"$output": "a.nothing"}},
            },
        ],
    }
    assert (
        journey.http("POST", "pipelines", json={"name": "n", "pipeline": missing}).status_code
        == 201
    )
    result = journey.cli("deployment", "run", "broken/n", "--watch")
    assert result.returncode == 1
    steps = steps_of(journey, run_id_of(result.stdout))
    assert steps["a"]["state"] == "COMPLETED" and steps["r"]["state"] == "FAILED"
    assert "takes output 'nothing' of step a, which did not record it" in steps["r"]["message"]
    assert "path, rows" in steps["r"]["message"]


KERNEL_CELLS = [
    "import nbflows\nfrom nbflows import Pipeline\n%load_ext nbflows",
    '%%flow tally\nnbflows.output("answer", 42)',
    'p = Pipeline("repo_pipeline_py")\n'
    "info = p.step(\n"
    '    "repo_info.ipynb:get_repo_info", name="info", pool="my-pool"\n'
    ').map(repo_name=["jupyter/notebook", "ipython/ipython"])\n'
    "report = p.step(\n"
    '    "repo_report.ipynb",\n'
    '    pool="my-pool",\n'
    "    parameters={\n"
    '        "repo_names": ["jupyter/notebook", "ipython/ipython"],\n'
    '        "stars": info.output("stars"),\n'
    '        "forks": info.output("forks"),\n'
    "    },\n"
    ")\n"
    'print("deployed", p.deploy(name="from-kernel")["full_name"])',
    'run = nbflows.get_client().create_flow_run_from_deployment("repo_pipeline_py/from-kernel")\n'
    "dag = nbflows.widgets.pipeline_graph(run)\n"
    "dag",
    'final = dag.wait(240)\nprint("pipeline", final["flow_run"]["state"]["type"])',
]


@pytest.mark.slow
def test_the_tutorial_pipeline_from_yaml_and_from_python_in_a_kernel(journey: Journey) -> None:
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    journey.start()
    journey.cli("work-pool", "create", "my-pool", "--type", "process", check=True)
    # The README's pipeline journey: the tutorial's two notebooks joined by a YAML pipeline.
    journey.cli("deploy", "notebooks/repo_pipeline.yaml", "--name", "weekly", check=True)
    result = journey.cli("deployment", "run", "repo_pipeline/weekly", "--watch")
    assert result.returncode == 0, result.stdout + result.stderr
    steps = steps_of(journey, run_id_of(result.stdout))
    assert steps["info[ipython/ipython]"]["outputs"] == {"stars": 16200, "forks": 4400}
    assert steps["report"]["outputs"] == {
        "total_stars": 11600 + 5900 + 16200,
        "most_starred": "ipython/ipython",
    }

    # The same from Python, in a real kernel the way Jupyter starts it for a notebook.
    path = journey.root / "pipeline_in_python.ipynb"
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [nbformat.v4.new_code_cell(code) for code in KERNEL_CELLS]
    nbformat.write(nb, path)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**journey.env, "JPY_SESSION_NAME": str(path)}, cwd=str(path.parent))
    try:
        NotebookClient(nb, km=km, timeout=300).execute()
    finally:
        km.shutdown_kernel(now=True)
    printed = ["".join(o.get("text", "")) for cell in nb.cells for o in cell.get("outputs", [])]
    assert "deployed repo_pipeline_py/from-kernel\n" in printed, printed
    assert "pipeline COMPLETED\n" in printed, printed
    widget = [o for o in nb.cells[3]["outputs"] if "data" in o]
    assert widget and "application/vnd.jupyter.widget-view+json" in widget[0]["data"]
    # The %%flow cell recorded its output on its interactive run.
    runs = journey.http("GET", "flow_runs", params={"flow_name": "tally"}).json()
    assert [r["outputs"] for r in runs] == [{"answer": 42}]
    python_run = journey.http("GET", "flow_runs", params={"flow_name": "repo_pipeline_py"}).json()[
        0
    ]
    graph = journey.http("GET", f"flow_runs/{python_run['id']}/pipeline").json()
    # A step is named after its notebook unless given a name.
    report = next(sr for sr in graph["step_runs"] if sr["step"] == "repo_report")
    assert report["outputs"]["total_stars"] == 11600 + 16200
