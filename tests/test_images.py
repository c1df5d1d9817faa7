"""Deployment images: context checks, Dockerfile, content tags, and real builds on a real engine.

The Docker tests build on the local base image made by `.ci/base-image.sh` (no registry is
reachable here) and skip without an engine, except under CI=true where they fail.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbflows.errors import InvalidInput, NotFound
from nbflows.packaging.build import IMAGE_WHEEL_ENV, build_for_deploy
from nbflows.packaging.build_context import BuildContext, find_build_context, prepare_build_context
from nbflows.packaging.build_plan import plan_build
from nbflows.packaging.docker_build import BuildResult, build_image, push_image
from nbflows.packaging.dockerfile import generate_dockerfile
from nbflows.packaging.images import (
    FLOW_NOTEBOOK_DIR,
    LABEL_CONTEXT_HASH,
    LABEL_FLOW,
    PROJECT_DIR,
    VENV_DIR,
    DeploymentImage,
    ImageBuildError,
    ImagePushError,
    default_base_image,
)
from nbflows.packaging.nbflows_wheel import (
    NbflowsPackage,
    _skip_source,
    _wheel_from_source,
    nbflows_package,
)
from nbflows.workers.job_templates import default_base_job_template
from tests.docker_support import REPO_ROOT, docker_client, local_base_image, remove_image

PROJECT = Path(__file__).resolve().parent / "data" / "img_project"
NOTEBOOK = Path("notebooks") / "hello.ipynb"
#: For plans that need no engine: install nbflows from the index, no wheel to build.
RELEASED = NbflowsPackage(requirement="nbflows==0.1.0")


def copy_project(dest: Path) -> Path:
    shutil.copytree(PROJECT, dest)
    return dest


def add_cell(notebook: Path, source: str) -> None:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(source, id=f"added-{len(nb.cells)}"))
    nbformat.write(nb, notebook)


# --------------------------------------------------------------------------------------------
# DeploymentImage and defaults


def test_image_name_may_carry_the_tag_and_reference_needs_one() -> None:
    image = DeploymentImage(name="registry.local:5000/team/sales:v1")
    assert (image.name, image.tag) == ("registry.local:5000/team/sales", "v1")
    assert image.reference == "registry.local:5000/team/sales:v1"
    assert DeploymentImage(name="registry.local:5000/sales").tag is None

    with pytest.raises(InvalidInput, match="computed from the build's content"):
        _ = DeploymentImage(name="sales").reference
    with pytest.raises(InvalidInput, match="invalid image name 'Sales'"):
        DeploymentImage(name="Sales")
    with pytest.raises(InvalidInput, match="invalid image tag"):
        DeploymentImage(name="sales", tag="-bad")
    with pytest.raises(InvalidInput, match="give the tag once"):
        DeploymentImage(name="sales:v1", tag="v2")
    with pytest.raises(InvalidInput, match="buildargs"):
        DeploymentImage(name="sales", buildargs={"N": 1})  # type: ignore[dict-item]


def test_default_base_image(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.delenv("NBFLOWS_BASE_IMAGE", raising=False)
    assert default_base_image() == f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim"
    monkeypatch.setenv("NBFLOWS_BASE_IMAGE", "corp/python:3.12")
    assert default_base_image() == "corp/python:3.12"


# --------------------------------------------------------------------------------------------
# The build context


def test_find_build_context_prefers_the_project_root(tmp_path: Path) -> None:
    nb_dir = tmp_path / "repo" / "analysis" / "deep"
    nb_dir.mkdir(parents=True)
    notebook = nb_dir / "x.ipynb"
    notebook.write_text("{}")
    assert find_build_context(notebook) == nb_dir  # no marker: the notebook's folder

    (tmp_path / "repo" / ".git").mkdir()
    assert find_build_context(notebook) == tmp_path / "repo"

    (tmp_path / "repo" / "analysis" / "pyproject.toml").write_text("[project]\n")
    assert find_build_context(notebook) == tmp_path / "repo" / "analysis"  # the nearest


def test_context_of_the_fixture_project_holds_notebook_and_data(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "proj")
    context = prepare_build_context(project / NOTEBOOK)
    assert context == BuildContext(root=project, notebook=project / NOTEBOOK)
    assert str(context.notebook_relpath) == "notebooks/hello.ipynb"


def test_deploying_from_the_wrong_folder_is_refused_with_the_folder_to_use(
    tmp_path: Path,
) -> None:
    # No requirements.txt/pyproject.toml/.git: the context falls back to the notebook's folder,
    # but the notebook reads ../data/greeting.txt.
    project = copy_project(tmp_path / "proj")
    (project / "requirements.txt").unlink()
    with pytest.raises(InvalidInput) as refused:
        prepare_build_context(project / NOTEBOOK)
    message = refused.value.message
    assert "'../data/greeting.txt'" in message
    assert f"Deploy from {project}," in message
    assert refused.value.details["outside_files"] == ["../data/greeting.txt"]
    assert refused.value.details["suggested_folder"] == str(project)

    # The same with an explicit context that does not hold the data either.
    with pytest.raises(InvalidInput, match="refers to files outside the build context"):
        prepare_build_context(project / NOTEBOOK, context_dir=project / "notebooks")
    # From the suggested folder it works.
    assert prepare_build_context(project / NOTEBOOK, context_dir=project).root == project

    # A context that does not contain the notebook at all.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(InvalidInput, match=r"is not inside the build context .*elsewhere"):
        prepare_build_context(project / NOTEBOOK, context_dir=elsewhere)
    with pytest.raises(NotFound):
        prepare_build_context(project / "notebooks" / "missing.ipynb")


def test_only_existing_relative_paths_in_code_count_as_references(tmp_path: Path) -> None:
    folder = tmp_path / "nbs"
    folder.mkdir()
    (tmp_path / "outside.csv").write_text("a\n")
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        cells=[
            nbformat.v4.new_markdown_cell("read '../outside.csv' (markdown: not code)"),
            nbformat.v4.new_code_cell("%%flow f --retries 1\nx = '../missing.csv'\ny = f'{x}'"),
            nbformat.v4.new_code_cell("url = 'https://example.org/../outside.csv'"),
        ],
    )
    nbformat.write(nb, folder / "a.ipynb")
    assert prepare_build_context(folder / "a.ipynb").root == folder

    nb.cells.append(nbformat.v4.new_code_cell("%%flow g\nimport pandas\npandas.read_csv(\n"))
    nb.cells.append(nbformat.v4.new_code_cell('df = open("../outside.csv")'))
    nbformat.write(nb, folder / "a.ipynb")
    with pytest.raises(InvalidInput, match=r"'\.\./outside\.csv'"):
        prepare_build_context(folder / "a.ipynb")


# --------------------------------------------------------------------------------------------
# What goes into the build context (and what never does)


def make_special_files(folder: Path) -> socket.socket:
    """A named pipe `pipe` and a listening Unix socket `sock` in `folder` (the socket's file
    lasts as long as the returned socket is open)."""
    os.mkfifo(folder / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock"))
    return sock


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """`fn()`, failing the test when it has not returned after `seconds` (a read of a named
    pipe blocks for ever; the thread is left behind as a daemon)."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still blocked after {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_build_context_honours_gitignore_and_never_holds_stores_or_runtime_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path / "proj")
    (project / ".git").mkdir()
    files = {
        # .gitignore at the root and in a subfolder, with an exception.
        ".gitignore": "*.out\nsecrets/\n!keep.out\n/only-at-root.txt\n",
        "run.out": "x",
        "keep.out": "kept",
        "secrets/token.txt": "s3cr3t",
        "data/only-at-root.txt": "kept: the pattern is anchored at the root",
        "only-at-root.txt": "x",
        "notebooks/.gitignore": "scratch.ipynb\n",
        "notebooks/scratch.ipynb": "{}",
        # Stores and Jupyter runtime files, wherever they are.
        "nbflows.db": "store",
        "nbflows.db-wal": "store",
        "data/cache.sqlite": "a database",
        "data/reference.db": "re-included by a .dockerignore exception",
        "jupyter_cookie_secret": "cookie",
        "runtime/jpserver-42.json": '{"token": "t"}',
        "runtime/jpserver-42-open.html": "<html>token</html>",
        "runtime/kernel-5f1c2a8e-0d7b-4c1e-9d3a-2b6f8e4c7a10.json": '{"key": "k"}',
        # This process's Jupyter data dir (the nbflows store and its logs) and runtime dir.
        "jdata/nbflows/server.log": "token=abc",
        "jrun/anything.txt": "x",
    }
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    with open(project / ".dockerignore", "a") as fh:
        fh.write("!data/reference.db\n")
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(project / "jdata"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(project / "jrun"))

    image = DeploymentImage(name="nbflows-test/ctx", base_image="base:1")
    plan = plan_build(
        image, prepare_build_context(project / NOTEBOOK), project / NOTEBOOK, package=RELEASED
    )
    sent = {f for f in plan.files if (project / f).is_file()}
    assert sent == {
        ".dockerignore",
        ".gitignore",
        "data/greeting.txt",
        "data/only-at-root.txt",
        "data/reference.db",
        "keep.out",
        "notebooks/.gitignore",
        "notebooks/hello.ipynb",
        "requirements.txt",
    }
    assert not any(f.startswith(("secrets", "jdata", "jrun")) for f in plan.files)
    notice = " ".join(plan.warnings)
    for left_out in ("nbflows.db", "jupyter_cookie_secret", "runtime/jpserver-42.json", "jdata"):
        assert left_out in notice, plan.warnings
    # What is left out does not count in the content tag.
    (project / "run.out").write_text("changed")
    (project / "nbflows.db").write_text("changed")
    again = plan_build(
        image, prepare_build_context(project / NOTEBOOK), project / NOTEBOOK, package=RELEASED
    )
    assert again.reference == plan.reference


def test_special_files_are_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path / "proj")
    sock = make_special_files(project / "data")
    try:
        wheel = tmp_path / "nbflows-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"not really a wheel: nothing is built here")
        monkeypatch.setenv(IMAGE_WHEEL_ENV, str(wheel))
        pool = {
            "name": "p",
            "type": "docker",
            "base_job_template": default_base_job_template("docker"),
        }
        lines: list[str] = []
        spec = within(
            30,
            lambda: build_for_deploy(
                project / NOTEBOOK,
                None,
                DeploymentImage(name="nbflows-test/special", base_image="base:1"),
                pool,
                build=False,
                progress=lines.append,
            ),
        )
    finally:
        sock.close()
    assert spec["reference"].startswith("nbflows-test/special:")
    assert "skipped data/pipe: a named pipe (FIFO) cannot go into an image" in lines
    assert "skipped data/sock: a socket cannot go into an image" in lines
    plan = plan_build(
        DeploymentImage(name="nbflows-test/special", base_image="base:1"),
        prepare_build_context(project / NOTEBOOK),
        project / NOTEBOOK,
        package=RELEASED,
    )
    assert "data/pipe" not in plan.files and "data/sock" not in plan.files


# --------------------------------------------------------------------------------------------
# The generated Dockerfile


def instructions(dockerfile: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_generated_dockerfile_orders_layers_for_the_cache() -> None:
    text = generate_dockerfile(
        "python:3.11-slim",
        has_requirements=True,
        nbflows_requirement=".nbflows/nbflows-0.1.0-py3-none-any.whl",
        notebook_relpath="notebooks/hello.ipynb",
        flow_notebook_name="flow.ipynb",
        flow_name="summarize",
    )
    steps = instructions(text)
    expected_order = [
        "FROM python:3.11-slim",
        f"ENV VIRTUAL_ENV={VENV_DIR}",
        f"RUN python3 -m venv {VENV_DIR}",
        "COPY requirements.txt ",
        "RUN pip install -r ",
        'COPY [".nbflows/nbflows-0.1.0-py3-none-any.whl"',
        "RUN pip install papermill ipykernel /opt/nbflows/wheels/nbflows-0.1.0-py3-none-any.whl",
        f"COPY . {PROJECT_DIR}",
        f'COPY [".nbflows/flow.ipynb", "{FLOW_NOTEBOOK_DIR}/flow.ipynb"]',
        f'WORKDIR "{PROJECT_DIR}/notebooks"',
    ]
    positions = []
    for prefix in expected_order:
        matches = [i for i, step in enumerate(steps) if step.startswith(prefix)]
        assert len(matches) == 1, (prefix, steps)
        positions.append(matches[0])
    assert positions == sorted(positions), steps
    assert f"PATH={VENV_DIR}/bin:$PATH" in steps[1]
    assert "python -m ipykernel install --sys-prefix --name python3" in steps[positions[6]]
    assert f'{LABEL_FLOW}="summarize"' in steps[-1]

    # A released nbflows comes from the index; no requirements.txt, no requirements layer.
    released = instructions(
        generate_dockerfile("base:1", False, "nbflows==0.1.0", "nb.ipynb", "flow.ipynb")
    )
    assert not any("requirements" in step for step in released)
    assert not any(".whl" in step for step in released)
    assert any(s.startswith("RUN pip install papermill ipykernel nbflows==0.1.0") for s in released)
    assert f"WORKDIR {PROJECT_DIR}" in released
    assert f'{LABEL_FLOW}="flow"' in released[-1]

    with pytest.raises(InvalidInput, match="flow notebook name"):
        generate_dockerfile("base:1", False, "nbflows==0.1.0", "nb.ipynb", "../x.ipynb")


# --------------------------------------------------------------------------------------------
# Content tags


def test_content_tag_follows_the_content_only(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "proj")
    image = DeploymentImage(name="nbflows-test/tags", base_image="base:1")

    def reference(**changes: Any) -> str:
        context = prepare_build_context(project / NOTEBOOK)
        img = DeploymentImage(**{**image.__dict__, **changes})
        return plan_build(img, context, project / NOTEBOOK, package=RELEASED).reference

    first = reference()
    assert first.startswith("nbflows-test/tags:") and len(first.split(":")[1]) == 12
    assert reference() == first  # stable

    # A copy elsewhere, with other mtimes, is the same content.
    twin = copy_project(tmp_path / "twin")
    (twin / "data" / "greeting.txt").touch()
    twin_plan = plan_build(
        image, prepare_build_context(twin / NOTEBOOK), twin / NOTEBOOK, package=RELEASED
    )
    assert twin_plan.reference == first

    # Ignored by .dockerignore (and always: checkpoints, bytecode, .git): same tag.
    (project / "scratch").mkdir()
    (project / "scratch" / "notes.txt").write_text("ignored")
    (project / "run.log").write_text("ignored")
    (project / "notebooks" / ".ipynb_checkpoints").mkdir()
    (project / "notebooks" / ".ipynb_checkpoints" / "hello-checkpoint.ipynb").write_text("{}")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert reference() == first
    plan = plan_build(
        image, prepare_build_context(project / NOTEBOOK), project / NOTEBOOK, package=RELEASED
    )
    assert "scratch/notes.txt" not in plan.files and "run.log" not in plan.files
    assert "data/greeting.txt" in plan.files and "notebooks/hello.ipynb" in plan.files

    # A project file changes: new tag.
    (project / "data" / "greeting.txt").write_text("changed\n")
    second = reference()
    assert second != first
    # The notebook changes: new tag.
    add_cell(project / NOTEBOOK, "print('more')")
    third = reference()
    assert third not in (first, second)
    # Build args, platform and base image are part of the content.
    assert reference(buildargs={"MODE": "x"}) != third
    assert reference(platform="linux/amd64") != third
    assert reference(base_image="base:2") != third
    # An explicit tag is used as given.
    assert reference(tag="v1") == "nbflows-test/tags:v1"


def test_development_install_ships_a_reproducible_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = nbflows_package()  # this checkout is an editable install
    assert package.wheel is not None and package.wheel.name.endswith(".whl")
    assert package.requirement == f".nbflows/{package.wheel.name}"

    # The same source gives the same wheel bytes when built again (so the content tag and the
    # layer cache survive a cleared wheel cache), and a second call reuses the cached wheel. A
    # frozen copy of the source: the checkout may be edited while the tests run.
    source = tmp_path / "src"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=lambda d, names: [n for n in names if _skip_source(n, Path(d) == REPO_ROOT)],
    )
    # A named pipe or a socket in the source tree (a server's socket, a debugging FIFO) is no
    # part of the wheel: reading the pipe would block the deploy for ever.
    sock = make_special_files(source)
    monkeypatch.setenv("NBFLOWS_CACHE_DIR", str(tmp_path / "cache-1"))
    try:
        first = within(120, lambda: _wheel_from_source(source))
    finally:
        sock.close()
    assert _wheel_from_source(source) == first
    monkeypatch.setenv("NBFLOWS_CACHE_DIR", str(tmp_path / "cache-2"))
    second = _wheel_from_source(source)
    assert second != first and second.read_bytes() == first.read_bytes()


# --------------------------------------------------------------------------------------------
# Real builds


@pytest.fixture(scope="session")
def client() -> Any:
    return docker_client()


@pytest.fixture(scope="session")
def base_image(client: Any) -> str:
    return local_base_image(client)


@pytest.fixture(scope="session")
def package() -> NbflowsPackage:
    # One nbflows wheel for the whole session, so that edits to the source tree made while the
    # tests run cannot change the nbflows layer between two builds of one test.
    return nbflows_package()


@dataclass
class Built:
    project: Path
    context: BuildContext
    image: DeploymentImage
    result: BuildResult
    progress: list[str]


#: The tests of the fixture project's one build run on one xdist worker: one build, not one each.
BUILT_ONCE = pytest.mark.xdist_group("images-built")


@pytest.fixture(scope="module")
def built(
    client: Any, base_image: str, package: NbflowsPackage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """The fixture project built once. A file with a fresh id makes each session really build
    (its project layers), while the layers below come from the engine's cache when it has them."""
    project = copy_project(tmp_path_factory.mktemp("built") / "proj")
    (project / "session-id.txt").write_text(uuid.uuid4().hex)
    context = prepare_build_context(project / NOTEBOOK)
    image = DeploymentImage(name="nbflows-test/img-project", base_image=base_image)
    lines: list[str] = []
    result = build_image(
        image, context, project / NOTEBOOK, progress=lines.append, client=client, package=package
    )
    print(f"\nfirst build of the fixture project: {result.seconds:.1f} s")
    try:
        yield Built(project, context, image, result, lines)
    finally:
        remove_image(client, result.reference)


def run_in(client: Any, reference: str, script: str) -> str:
    output = client.containers.run(
        reference, ["sh", "-c", script], remove=True, stdout=True, stderr=True
    )
    return str(output.decode())


@pytest.mark.docker
@BUILT_ONCE
def test_built_image_runs_the_flow_notebook(client: Any, built: Built) -> None:
    result = built.result
    assert result.built
    assert result.reference.startswith("nbflows-test/img-project:")
    assert any(line.startswith("Step 1/") for line in built.progress)
    assert any(line.startswith("Successfully tagged") for line in built.progress)
    assert result.steps[0].instruction == f"FROM {built.image.base_image}"

    image = client.images.get(result.reference)
    assert image.id == result.image_id
    assert image.labels[LABEL_CONTEXT_HASH] == result.context_hash
    assert image.labels[LABEL_FLOW] == "hello"

    imports = run_in(client, result.reference, 'python -c "import nbflows, papermill, six"')
    assert imports == ""
    # The registered kernel runs the flow notebook from the notebook's folder, where its
    # relative path to ../data/greeting.txt resolves inside the project copy.
    output = run_in(
        client,
        result.reference,
        'pwd && papermill "$NBFLOWS_FLOW_NOTEBOOK" /tmp/out.ipynb --log-output 2>&1',
    )
    assert output.startswith(f"{PROJECT_DIR}/notebooks\n"), output
    assert "hello from the project six 1." in output, output


@pytest.mark.docker
@BUILT_ONCE
def test_same_content_is_not_built_again(
    client: Any, built: Built, package: NbflowsPackage
) -> None:
    lines: list[str] = []
    again = build_image(
        built.image,
        prepare_build_context(built.project / NOTEBOOK),
        built.project / NOTEBOOK,
        progress=lines.append,
        client=client,
        package=package,
    )
    assert not again.built
    assert again.reference == built.result.reference
    assert again.image_id == built.result.image_id
    assert again.steps == []
    assert not any(line.startswith("Step ") for line in lines)
    assert lines == [f"Image {again.reference} is up to date: nothing to build"]
    print(f"\nno-change build_image: {again.seconds:.2f} s")


@pytest.mark.docker
@BUILT_ONCE
def test_editing_only_the_notebook_rebuilds_only_the_last_layers(
    client: Any, built: Built, package: NbflowsPackage, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    shutil.copytree(built.project, project)
    add_cell(project / NOTEBOOK, "print('edited')")
    lines: list[str] = []
    result = build_image(
        built.image,
        prepare_build_context(project / NOTEBOOK),
        project / NOTEBOOK,
        progress=lines.append,
        client=client,
        package=package,
    )
    try:
        assert result.built and result.reference != built.result.reference
        first_project_step = next(
            i for i, s in enumerate(result.steps) if s.instruction.startswith("COPY . ")
        )
        below, above = result.steps[:first_project_step], result.steps[first_project_step:]
        # Base, venv, requirements and nbflows layers: all from the cache.
        assert [s.instruction.split()[0] for s in below] == [
            "FROM", "ENV", "RUN", "COPY", "RUN", "COPY", "RUN",
        ]  # fmt: skip
        assert all(s.cached for s in below), below
        assert sum(line.strip() == "---> Using cache" for line in lines) == len(below) - 1
        # Project files, flow notebook and the metadata after them: rebuilt.
        assert [s.cached for s in above] == [False] * len(above), above
        print(
            f"\nrebuild after editing only the notebook: {result.seconds:.1f} s "
            f"({len(above)} of {len(result.steps)} steps rebuilt)"
        )
    finally:
        remove_image(client, result.reference)


@pytest.mark.docker
def test_user_dockerfile_gets_the_flow_notebook_appended(
    client: Any, base_image: str, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "proj")
    (project / "Dockerfile").write_text(
        f"FROM {base_image}\nCOPY data /srv/data\nENV GREETING_FILE=/srv/data/greeting.txt"
    )  # no final newline: the appended steps must still start on their own line
    image = DeploymentImage(name="nbflows-test/user-dockerfile", dockerfile="Dockerfile")
    nb = nbformat.read(project / NOTEBOOK, as_version=4)
    result = build_image(image, prepare_build_context(project / NOTEBOOK), nb, client=client)
    try:
        assert [s.instruction.split()[0] for s in result.steps][:3] == ["FROM", "COPY", "ENV"]
        assert result.steps[3].instruction.startswith('COPY [".nbflows/flow.ipynb"')
        # (echo: a last line without a newline can be missing from logs read at exit)
        output = run_in(
            client, result.reference, 'cat "$GREETING_FILE" "$NBFLOWS_FLOW_NOTEBOOK" && echo'
        )
        greeting, _, notebook = output.partition("\n")
        assert greeting == "hello from the project"
        assert nbformat.reads(notebook, as_version=4).cells[0].source == nb.cells[0].source
    finally:
        remove_image(client, result.reference)


@pytest.mark.docker
def test_failing_run_step_names_the_step_and_its_output(
    client: Any, base_image: str, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "proj")
    (project / "docker").mkdir()
    (project / "docker" / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN echo preparing\nRUN echo about to fail && ls /nowhere && true\n"
    )
    image = DeploymentImage(name="nbflows-test/failing", dockerfile="docker/Dockerfile")
    lines: list[str] = []
    with pytest.raises(ImageBuildError) as failed:
        build_image(
            image,
            prepare_build_context(project / NOTEBOOK),
            project / NOTEBOOK,
            progress=lines.append,
            client=client,
        )
    error = failed.value
    assert isinstance(error, InvalidInput)
    assert error.step == "RUN echo about to fail && ls /nowhere && true"
    assert "about to fail" in error.output
    assert any("/nowhere" in line and "No such file" in line for line in error.output)
    assert "preparing" not in error.output  # only the failing step's output
    assert "failed at step 'RUN echo about to fail" in error.message
    assert "returned a non-zero code: 2" in error.message
    assert error.to_json()["details"]["step"] == error.step
    assert "about to fail" in lines  # streamed as it came


@pytest.mark.docker
def test_missing_base_image_says_how_to_choose_another(client: Any, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "proj")
    image = DeploymentImage(name="nbflows-test/no-base", base_image="nbflows-test/no-such-base:0")
    with pytest.raises(ImageBuildError) as failed:
        build_image(
            image,
            prepare_build_context(project / NOTEBOOK),
            project / NOTEBOOK,
            client=client,
            package=RELEASED,
        )
    message = failed.value.message
    assert failed.value.step == "FROM nbflows-test/no-such-base:0"
    assert message.startswith("The base image nbflows-test/no-such-base:0 cannot be found")
    for advice in ("DeploymentImage(base_image=...)", "NBFLOWS_BASE_IMAGE", "work pool"):
        assert advice in message


@pytest.mark.docker
def test_image_gets_only_the_files_the_context_keeps(
    client: Any, base_image: str, tmp_path: Path
) -> None:
    project = copy_project(tmp_path / "proj")
    (project / ".git").mkdir()
    (project / ".gitignore").write_text("secrets/\n")
    (project / "secrets").mkdir()
    (project / "secrets" / "token.txt").write_text("s3cr3t")
    (project / "nbflows.db").write_text("store")
    (project / "jupyter_cookie_secret").write_text("cookie")
    (project / "Dockerfile").write_text(f"FROM {base_image}\nCOPY . /srv/project\n")
    sock = make_special_files(project)
    try:
        image = DeploymentImage(name="nbflows-test/context", dockerfile="Dockerfile")
        lines: list[str] = []
        result = within(
            120,
            lambda: build_image(
                image,
                prepare_build_context(project / NOTEBOOK),
                project / NOTEBOOK,
                progress=lines.append,
                client=client,
            ),
        )
    finally:
        sock.close()
    try:
        listed = run_in(client, result.reference, "cd /srv/project && find . -mindepth 1 | sort")
    finally:
        remove_image(client, result.reference)
    # (.nbflows holds what nbflows adds to the context: the Dockerfile and the flow notebook.)
    assert listed.split() == [
        "./.dockerignore",
        "./.gitignore",
        "./.nbflows",
        "./.nbflows/Dockerfile",
        "./.nbflows/hello.ipynb",
        "./Dockerfile",
        "./data",
        "./data/greeting.txt",
        "./notebooks",
        "./notebooks/hello.ipynb",
        "./requirements.txt",
    ]
    assert "skipped pipe: a named pipe (FIFO) cannot go into an image" in lines
    assert "skipped sock: a socket cannot go into an image" in lines


# --------------------------------------------------------------------------------------------
# Pushing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """A real registry (Debian's docker-registry) on loopback that wants a login, as
    `user`/`secret`. The engine treats 127.0.0.0/8 registries as plain-HTTP ones."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # bcrypt for htpasswd: the registry accepts nothing else

    port = free_port()
    (tmp_path / "htpasswd").write_text(
        "user:" + crypt.crypt("secret", crypt.mksalt(crypt.METHOD_BLOWFISH)) + "\n"
    )
    (tmp_path / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
                "http": {"addr": f"127.0.0.1:{port}"},
                "auth": {"htpasswd": {"realm": "test", "path": str(tmp_path / "htpasswd")}},
                "log": {"level": "warn"},
            }
        )
    )
    log = (tmp_path / "registry.log").open("wb")
    proc = subprocess.Popen(
        [binary, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "registry.log"
            ).read_text()
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.docker
def test_push_uses_the_users_docker_credentials(
    client: Any,
    base_image: str,
    registry: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    reference = f"{registry}/nbflows-test/pushed:v1"
    client.images.get(base_image).tag(reference)
    try:
        # Without credentials the registry's own refusal comes back.
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-login"))
        with pytest.raises(ImagePushError, match="no basic auth credentials"):
            push_image(reference)

        # With the credentials `docker login` would have saved, the push goes through.
        config = tmp_path / "logged-in"
        config.mkdir()
        auth = base64.b64encode(b"user:secret").decode()
        (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        lines: list[str] = []
        push_image(reference, progress=lines.append)
        assert any("Pushed" in line for line in lines), lines

        tags = httpx.get(
            f"http://{registry}/v2/nbflows-test/pushed/tags/list", auth=("user", "secret")
        )
        assert tags.json() == {"name": "nbflows-test/pushed", "tags": ["v1"]}
    finally:
        remove_image(client, reference)


@pytest.mark.docker
def test_push_to_an_unreachable_registry_raises_the_engines_message(
    client: Any, base_image: str
) -> None:
    reference = f"127.0.0.1:{free_port()}/nbflows-test/unreachable:v1"
    client.images.get(base_image).tag(reference)
    try:
        with pytest.raises(ImagePushError) as failed:
            push_image(reference, client=client)
        assert failed.value.message.startswith(f"pushing {reference} failed: ")
        assert "connection refused" in failed.value.message
    finally:
        remove_image(client, reference)
