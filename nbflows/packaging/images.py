"""Deployment images: a Docker image built from a notebook's project, tagged by its content.

The story of a build, as `build_image` tells it:

1. `prepare_build_context(notebook)` finds the project folder sent to Docker (the build context)
   and refuses a context that would leave out the notebook or files it opens by relative path.
2. `plan_build(image, context, flow_notebook)` writes the Dockerfile (`generate_dockerfile`, or the
   user's own with the flow notebook appended), lists the context files as Docker would
   (`.dockerignore` honoured) and hashes all of it into a content tag.
3. `build_image(...)` does nothing when an image with that tag and hash exists; otherwise it
   streams the context to the engine and the build output to `progress`, naming the failing step
   on error (`ImageBuildError`).
4. `push_image(reference)` pushes with the user's own Docker credentials.

The generated Dockerfile orders its layers from what changes least (base, virtualenv, the
project's requirements, nbflows) to what changes most (project files, then the flow notebook), so
editing only the notebook rebuilds only the last layers.

Everything here blocks on the Docker engine: callers in an event loop run it in a thread.
`docker` is imported lazily, so that importing this module (for `DeploymentImage`) stays cheap
in a kernel.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from nbflows.errors import InvalidInput

if TYPE_CHECKING:
    import docker
    from nbformat import NotebookNode

__all__ = [
    "CONTEXT_EXTRAS_DIR",
    "FLOW_NOTEBOOK_DIR",
    "LABEL_CONTEXT_HASH",
    "LABEL_FLOW",
    "LABEL_FLOW_NOTEBOOK",
    "PROJECT_DIR",
    "VENV_DIR",
    "BuildContext",
    "BuildPlan",
    "BuildResult",
    "BuildStep",
    "ContextFiles",
    "DeploymentImage",
    "ImageBuildError",
    "ImagePushError",
    "NbflowsPackage",
    "build_image",
    "default_base_image",
    "docker_client",
    "find_build_context",
    "generate_dockerfile",
    "list_context_files",
    "nbflows_package",
    "plan_build",
    "prepare_build_context",
    "push_image",
    "split_image_reference",
]

#: Where things live inside an image built by nbflows.
VENV_DIR = "/opt/nbflows/venv"
PROJECT_DIR = "/opt/nbflows/project"
FLOW_NOTEBOOK_DIR = "/opt/nbflows/flow"
#: Files nbflows adds to the build context (Dockerfile, flow notebook, nbflows wheel) go under
#: this folder of the context; a folder of that name in the project itself is not sent.
CONTEXT_EXTRAS_DIR = ".nbflows"

LABEL_FLOW = "org.nbflows.flow"
LABEL_FLOW_NOTEBOOK = "org.nbflows.flow-notebook"
LABEL_CONTEXT_HASH = "org.nbflows.context-hash"

#: Files that mark a project's root folder (besides a `.git` folder).
PROJECT_MARKERS = ("requirements.txt", "pyproject.toml")

# Never part of an image, whatever `.dockerignore` says: repository history, editor checkpoints,
# bytecode and a local virtualenv change all the time (so would change the content tag and
# invalidate the `COPY .` layer) and are useless or wrong inside the image.
_ALWAYS_IGNORED = (
    ".git",
    CONTEXT_EXTRAS_DIR,
    ".venv",
    "**/.ipynb_checkpoints",
    "**/__pycache__",
)
# Files that hold secrets of the machine that builds: the nbflows store, Jupyter's cookie
# secret, server files holding its token, kernel connection files holding their keys. Never
# sent, whatever `.dockerignore` says.
_NEVER_SENT = re.compile(
    r"^(nbflows\.db(-.*)?|jupyter_cookie_secret|(jp|nb)server-\d+(-open)?\.(json|html)"
    r"|kernel-[0-9a-f-]{8,}\.json)$"
)
# Databases (a store of another set-up, a cache): left out unless a `.dockerignore` exception
# (`!data/reference.db`) takes one back.
_DATABASE_PATTERNS = ("**/*.db", "**/*.db-*", "**/*.sqlite", "**/*.sqlite3", "**/*.sqlite-*")
_SPECIAL_FILES = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}
_DOCKERFILE_IN_CONTEXT = f"{CONTEXT_EXTRAS_DIR}/Dockerfile"
_TAG_LENGTH = 12
_OUTPUT_LINES_KEPT = 30

_NAME_RE = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Errors


class ImageBuildError(InvalidInput):
    """A build failed: `step` is the failing Dockerfile instruction, `output` its last lines."""

    def __init__(self, message: str, *, step: str = "", output: Iterable[str] = ()) -> None:
        lines = list(output)
        super().__init__(message, step=step, output=lines)
        self.step = step
        self.output = lines


class ImagePushError(InvalidInput):
    """The registry (or the engine) refused a push; the message is the registry's own."""


# --------------------------------------------------------------------------------------------
# What the user asks for


@dataclass
class DeploymentImage:
    """The image a deployment runs in.

    `name` is the repository (`sales`, `registry.example:5000/team/sales`); `name` may also carry
    the tag (`sales:v1`). With `tag=None` the tag is computed from the content of the build
    (Dockerfile, project files, flow notebook, build args, platform): building the same thing
    twice gives the same tag and no second build. `dockerfile="auto"` generates the Dockerfile;
    any other value is the path of the user's Dockerfile, relative to the build context.
    `base_image` (for the generated Dockerfile) defaults to `default_base_image()`.
    """

    name: str
    tag: str | None = None
    dockerfile: str = "auto"
    base_image: str | None = None
    platform: str | None = None
    buildargs: dict[str, str] | None = None

    def __post_init__(self) -> None:
        repository, tag = split_image_reference(self.name)
        if tag is not None:
            if self.tag is not None and self.tag != tag:
                raise InvalidInput(
                    f"image name {self.name!r} carries the tag {tag!r} but tag={self.tag!r} "
                    "was given too; give the tag once"
                )
            self.name, self.tag = repository, tag
        if not _NAME_RE.match(self.name):
            raise InvalidInput(
                f"invalid image name {self.name!r}: use lowercase letters, digits and "
                "separators (. _ -), optionally path components after a registry host "
                "(registry:5000/team/flows)"
            )
        if self.tag is not None and not _TAG_RE.match(self.tag):
            raise InvalidInput(
                f"invalid image tag {self.tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'"
            )
        if not self.dockerfile:
            raise InvalidInput("dockerfile must be 'auto' or the path of a Dockerfile")
        if self.buildargs is not None:
            if not isinstance(self.buildargs, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.buildargs.items()
            ):
                raise InvalidInput("buildargs must map names to string values")
            self.buildargs = dict(self.buildargs)

    @property
    def reference(self) -> str:
        """`name:tag`. Without an explicit tag the tag comes from the content: see `plan_build`."""
        if self.tag is None:
            raise InvalidInput(
                f"image {self.name!r} has no tag yet: its tag is computed from the build's "
                "content; use plan_build(...).reference or build_image(...).reference"
            )
        return f"{self.name}:{self.tag}"


def default_base_image() -> str:
    """`NBFLOWS_BASE_IMAGE` when set, else `python:X.Y-slim` for the running interpreter."""
    configured = os.environ.get("NBFLOWS_BASE_IMAGE", "").strip()
    if configured:
        return configured
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


# --------------------------------------------------------------------------------------------
# The build context


@dataclass(frozen=True)
class BuildContext:
    """The folder sent to Docker (`root`) and the notebook inside it."""

    root: Path
    notebook: Path

    @property
    def notebook_relpath(self) -> PurePosixPath:
        return PurePosixPath(self.notebook.relative_to(self.root).as_posix())


def find_build_context(notebook_path: str | os.PathLike[str]) -> Path:
    """The notebook's project root: the nearest parent folder that is a git root (has `.git`) or
    has a `requirements.txt` or `pyproject.toml`; the notebook's own folder when there is none.

    The search stops below the home directory and the file system root: a home folder kept in
    git (dotfiles) is not a project, and sending it to Docker would send everything.
    """
    notebook = Path(notebook_path).expanduser().resolve()
    stop = {Path.home().resolve(), Path(notebook.anchor)}
    for folder in notebook.parents:
        if folder in stop:
            break
        if (folder / ".git").exists() or any((folder / m).is_file() for m in PROJECT_MARKERS):
            return folder
    return notebook.parent


def prepare_build_context(
    notebook_path: str | os.PathLike[str], context_dir: str | os.PathLike[str] | None = None
) -> BuildContext:
    """Check that `context_dir` (default: `find_build_context(notebook)`) can build the notebook.

    Raises `InvalidInput` when the notebook is not inside the context, or when files the notebook
    opens by relative path (string literals in its code cells that name existing files or
    folders relative to the notebook's folder) lie outside it: Docker cannot copy them into the
    image, so the run would fail later, far from the cause. The message names the files and the
    folder to deploy from. `NotFound`/`InvalidInput` for a missing or invalid notebook.
    """
    from nbflows.notebooks.loading import load_notebook

    notebook, nb = load_notebook(Path(notebook_path))
    root = (
        Path(context_dir).expanduser().resolve()
        if context_dir is not None
        else find_build_context(notebook)
    )
    if not root.is_dir():
        raise InvalidInput(f"build context {root} is not a folder", context=str(root))
    if not notebook.is_relative_to(root):
        suggested = find_build_context(notebook)
        raise InvalidInput(
            f"the notebook {notebook} is not inside the build context {root}, so it cannot be "
            f"built into the image; deploy from {suggested} (the notebook's project folder) "
            "or from another folder that contains the notebook",
            notebook=str(notebook),
            context=str(root),
            suggested_folder=str(suggested),
        )
    outside = {
        literal: target
        for literal, target in _referenced_paths(nb, notebook.parent)
        if not target.is_relative_to(root)
    }
    if outside:
        common = Path(os.path.commonpath([root, *outside.values()]))
        listed = ", ".join(f"{lit!r} ({target})" for lit, target in sorted(outside.items()))
        raise InvalidInput(
            f"the notebook {notebook.name} refers to files outside the build context {root}: "
            f"{listed}. Docker copies only the build context into the image, so the deployed "
            f"flow would not find them. Deploy from {common}, which holds the notebook and these "
            "files, or mark that folder as the project root with a requirements.txt or "
            "pyproject.toml",
            notebook=str(notebook),
            context=str(root),
            outside_files=sorted(outside),
            suggested_folder=str(common),
        )
    return BuildContext(root=root, notebook=notebook)


def _referenced_paths(nb: NotebookNode, folder: Path) -> list[tuple[str, Path]]:
    """(literal, resolved path) of code-cell string literals naming something in `folder`."""
    found: dict[str, Path] = {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for literal in _string_literals(cell.get("source", "")):
            if (
                not literal
                or len(literal) > 1024
                or "\n" in literal
                or "\0" in literal
                or "://" in literal
                or literal.startswith(("~", "/", "\\"))
                or PurePosixPath(literal).is_absolute()
            ):
                continue
            candidate = folder / literal
            try:
                exists = os.path.lexists(candidate)
            except (OSError, ValueError):
                continue
            if exists:
                found[literal] = candidate.resolve()
    return sorted(found.items())


def _string_literals(source: str | list[str]) -> Iterator[str]:
    text = "".join(source) if isinstance(source, list) else source
    # IPython magics and shell escapes are not Python: drop those lines (a `%%flow` cell's body
    # below its first line is plain Python).
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines()
    )
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        # Unfinished code: fall back to plain quoted runs.
        yield from (m.group(2) for m in re.finditer(r"(['\"])([^'\"\n]+)\1", code))
        return
    for token in tokens:
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):
            continue  # f-strings and other non-constant strings
        if isinstance(value, str):
            yield value


# --------------------------------------------------------------------------------------------
# nbflows inside the image


@dataclass(frozen=True)
class NbflowsPackage:
    """How the image installs nbflows: `requirement` is what `pip install` gets inside the
    build; `wheel` is a local wheel that travels in the build context (development installs)."""

    requirement: str
    wheel: Path | None = None


def nbflows_package() -> NbflowsPackage:
    """The nbflows the image gets: the same version as the one running here.

    A release installed from a package index is installed from the index (`nbflows==X.Y.Z`); a
    development install (editable, or from a source folder) is packed into a wheel from its source
    tree, cached by the source's content, and sent with the build context; a local wheel is sent
    as it is; a VCS install is installed from the same VCS URL and commit.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("nbflows")
    except metadata.PackageNotFoundError:
        dist = None
    if dist is None:
        source = Path(__file__).resolve().parents[2]
        if not (source / "pyproject.toml").is_file():
            raise InvalidInput("nbflows is neither installed nor run from its source tree")
        return _development_package(source)
    direct_url = dist.read_text("direct_url.json")
    if not direct_url:
        return NbflowsPackage(requirement=f"nbflows=={dist.version}")
    info = json.loads(direct_url)
    url = str(info.get("url", ""))
    parsed = urlparse(url)
    if parsed.scheme == "file":
        local = Path(unquote(parsed.path))
        if local.is_dir():
            return _development_package(local)
        if local.suffix == ".whl" and local.is_file():
            return NbflowsPackage(requirement=f"{CONTEXT_EXTRAS_DIR}/{local.name}", wheel=local)
        raise InvalidInput(
            f"nbflows was installed from {local}, which is gone; reinstall nbflows so that "
            "images can install the same version"
        )
    vcs = info.get("vcs_info")
    if vcs:
        return NbflowsPackage(requirement=f"nbflows @ {vcs['vcs']}+{url}@{vcs['commit_id']}")
    return NbflowsPackage(requirement=f"nbflows @ {url}")


# Parts of the nbflows source tree that are not in its wheel: left out of the copy that the wheel
# is built from and of the digest that keys the wheel cache.
#: Folders of the source tree's top level that are not part of the package.
_NOT_IN_WHEEL = {"build", "dist", "node_modules", "tests", "bench", "notebooks"}


def _skip_source(name: str, top: bool) -> bool:
    # Only at the top: `nbflows/notebooks/` is a subpackage, `notebooks/` the tutorials.
    if name.startswith(".") or name == "__pycache__" or name.endswith(".egg-info"):
        return True
    return top and name in _NOT_IN_WHEEL


def _development_package(source: Path) -> NbflowsPackage:
    wheel = _wheel_from_source(source)
    return NbflowsPackage(requirement=f"{CONTEXT_EXTRAS_DIR}/{wheel.name}", wheel=wheel)


def _wheel_from_source(source: Path) -> Path:
    """A wheel of the nbflows source tree, built once per source content.

    The wheel is built from a copy (the developer's tree stays untouched) with a fixed
    SOURCE_DATE_EPOCH, so the same source gives the same bytes: the content tag and Docker's
    layer cache stay valid across rebuilds of the wheel.
    """
    digest = hashlib.sha256()
    for path in _walk_files(source, _skip_source):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    cache = _cache_dir() / "wheels" / digest.hexdigest()[:24]
    existing = sorted(cache.glob("nbflows-*.whl"))
    if existing:
        return existing[0]
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nbflows-wheel-") as tmp:
        tree = Path(tmp) / "src"
        shutil.copytree(
            source,
            tree,
            ignore=lambda folder, names: [
                n
                for n in names
                if _skip_source(n, Path(folder) == source) or _is_special(os.path.join(folder, n))
            ],
        )
        out = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # 1980-01-01, zip's epoch
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            shutil.rmtree(out, ignore_errors=True)
            lines = (done.stdout + done.stderr).splitlines()
            raise ImageBuildError(
                f"could not build an nbflows wheel from the source tree {source} to install in "
                "the image:\n" + "\n".join(lines[-_OUTPUT_LINES_KEPT:]),
                step=f"pip wheel {source}",
                output=lines[-_OUTPUT_LINES_KEPT:],
            )
        try:
            out.rename(cache)
        except OSError:  # another build finished the same wheel first
            shutil.rmtree(out, ignore_errors=True)
    return sorted(cache.glob("nbflows-*.whl"))[0]


def _is_special(path: str) -> bool:
    """A named pipe, socket or device: copying or reading one blocks or fails."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) in _SPECIAL_FILES
    except OSError:
        return False


def _cache_dir() -> Path:
    configured = os.environ.get("NBFLOWS_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbflows"


def _walk_files(root: Path, skip: Callable[[str, bool], bool]) -> Iterator[Path]:
    """Regular files (or links to them) under `root`: a named pipe or a socket is no source.
    `skip(name, top)` leaves a name out (`top`: it is directly under `root`)."""
    for folder, dirs, files in os.walk(root):
        top = Path(folder) == root
        dirs[:] = sorted(d for d in dirs if not skip(d, top))
        for name in sorted(files):
            if not skip(name, top) and os.path.isfile(os.path.join(folder, name)):
                yield Path(folder) / name


# --------------------------------------------------------------------------------------------
# The Dockerfile


def generate_dockerfile(
    base_image: str,
    has_requirements: bool,
    nbflows_requirement: str,
    notebook_relpath: str | PurePosixPath,
    flow_notebook_name: str,
    *,
    flow_name: str | None = None,
) -> str:
    """The Dockerfile nbflows builds a notebook's project with.

    Layers, from what changes least to what changes most, so that an edit rebuilds only what
    follows it: the base image; a virtualenv at `VENV_DIR` first on PATH; the project's
    `requirements.txt` (only that file, so editing other files keeps this layer); papermill,
    ipykernel and nbflows (`nbflows_requirement`: a requirement, or a wheel under
    `CONTEXT_EXTRAS_DIR` of the context) with the `python3` kernel registered; the project files
    at `PROJECT_DIR`; the flow notebook `flow_notebook_name` (sent as
    `CONTEXT_EXTRAS_DIR/flow_notebook_name`) at `FLOW_NOTEBOOK_DIR`, last; the working directory
    is the notebook's folder in the project, so its relative paths work as they did locally.
    """
    _check_flow_notebook_name(flow_notebook_name)
    notebook_dir = PurePosixPath(notebook_relpath).parent
    workdir = PurePosixPath(PROJECT_DIR) / notebook_dir if str(notebook_dir) != "." else None
    lines = [
        "# Generated by nbflows. Layers go from what changes least to what changes most, so that",
        "# editing only the notebook rebuilds only the last layers.",
        f"FROM {base_image}",
        f"ENV VIRTUAL_ENV={VENV_DIR} \\",
        f"    PATH={VENV_DIR}/bin:$PATH \\",
        "    PYTHONUNBUFFERED=1 \\",
        "    PIP_DISABLE_PIP_VERSION_CHECK=1 \\",
        "    PIP_NO_CACHE_DIR=1",
        # python3 -m venv works on python:*-slim and on Debian's python3 (with python3-venv).
        f"RUN python3 -m venv {VENV_DIR}",
    ]
    if has_requirements:
        lines += [
            "COPY requirements.txt /opt/nbflows/requirements.txt",
            "RUN pip install -r /opt/nbflows/requirements.txt",
        ]
    install = shlex.quote(nbflows_requirement)
    if _is_context_wheel(nbflows_requirement):
        wheel = f"/opt/nbflows/wheels/{PurePosixPath(nbflows_requirement).name}"
        lines.append(f"COPY {_quoted([nbflows_requirement, wheel])}")
        install = shlex.quote(wheel)
    # The kernel is registered here rather than after the project files: it depends only on
    # ipykernel, so it stays cached when the project changes.
    lines += [
        f"RUN pip install papermill ipykernel {install} \\",
        " && python -m ipykernel install --sys-prefix --name python3",
        f"COPY . {PROJECT_DIR}",
        _copy_flow_notebook(flow_notebook_name),
    ]
    if workdir is not None:
        lines.append(f"WORKDIR {_quoted(str(workdir))}")
    else:
        lines.append(f"WORKDIR {PROJECT_DIR}")
    lines += _flow_metadata(flow_notebook_name, flow_name)
    return "\n".join(lines) + "\n"


def _derived_dockerfile(
    user_dockerfile: str, flow_notebook_name: str, flow_name: str | None
) -> str:
    """The user's Dockerfile as it is, with the flow notebook added last."""
    lines = [
        user_dockerfile.rstrip("\n"),
        "",
        "# Added by nbflows: the flow notebook, last, so that editing it rebuilds only this.",
        _copy_flow_notebook(flow_notebook_name),
        *_flow_metadata(flow_notebook_name, flow_name),
    ]
    return "\n".join(lines) + "\n"


def _copy_flow_notebook(flow_notebook_name: str) -> str:
    return "COPY " + _quoted(
        [f"{CONTEXT_EXTRAS_DIR}/{flow_notebook_name}", f"{FLOW_NOTEBOOK_DIR}/{flow_notebook_name}"]
    )


def _flow_metadata(flow_notebook_name: str, flow_name: str | None) -> list[str]:
    in_image = f"{FLOW_NOTEBOOK_DIR}/{flow_notebook_name}"
    flow = flow_name or PurePosixPath(flow_notebook_name).stem
    return [
        f"ENV NBFLOWS_FLOW_NOTEBOOK={_quoted(in_image)}",
        f"LABEL {LABEL_FLOW}={_quoted(flow)} {LABEL_FLOW_NOTEBOOK}={_quoted(in_image)}",
    ]


def _quoted(value: str | list[str]) -> str:
    """A double-quoted Dockerfile string (or exec-form list); quotes and backslashes escaped."""
    return json.dumps(value, ensure_ascii=False)


def _check_flow_notebook_name(name: str) -> None:
    if not name.endswith(".ipynb") or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidInput(
            f"invalid flow notebook name {name!r}: a plain file name ending in .ipynb"
        )


def _is_context_wheel(requirement: str) -> bool:
    return requirement.startswith(f"{CONTEXT_EXTRAS_DIR}/") and requirement.endswith(".whl")


# --------------------------------------------------------------------------------------------
# Planning: everything that goes into the build, and its content tag


@dataclass(frozen=True)
class BuildPlan:
    """What `build_image` would send to Docker, and the reference it would build."""

    reference: str
    context_hash: str
    dockerfile: str
    context: BuildContext
    files: tuple[str, ...]
    extras: Mapping[str, bytes]
    buildargs: Mapping[str, str]
    platform: str | None
    base_image: str | None
    labels: Mapping[str, str]
    #: Lines to tell the user: files of the project that are not sent, and why.
    warnings: tuple[str, ...] = ()


def plan_build(
    image: DeploymentImage,
    context: BuildContext,
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
    *,
    flow_name: str | None = None,
    package: NbflowsPackage | None = None,
) -> BuildPlan:
    """Plan the build of `flow_notebook` (a path to the extracted `.ipynb`, or a notebook) in
    `context`: the Dockerfile, the context files (`list_context_files`), and the reference. With `image.tag=None` the tag is the first 12 hex digits of a
    sha256 over the Dockerfile, every context file's path and bytes, the files nbflows adds, the
    build args and the platform: the same content always gives the same tag. `package` (default
    `nbflows_package()`) is how the generated Dockerfile installs nbflows.
    """
    notebook_name, notebook_bytes = _flow_notebook_bytes(flow_notebook)
    listing = list_context_files(context.root)
    files = listing.files
    extras: dict[str, bytes] = {f"{CONTEXT_EXTRAS_DIR}/{notebook_name}": notebook_bytes}
    base_image: str | None = None
    if image.dockerfile == "auto":
        base_image = image.base_image or default_base_image()
        package = package or nbflows_package()
        if package.wheel is not None:
            extras[f"{CONTEXT_EXTRAS_DIR}/{package.wheel.name}"] = package.wheel.read_bytes()
        dockerfile = generate_dockerfile(
            base_image,
            has_requirements="requirements.txt" in files,
            nbflows_requirement=package.requirement,
            notebook_relpath=context.notebook_relpath,
            flow_notebook_name=notebook_name,
            flow_name=flow_name,
        )
    else:
        user_path = Path(image.dockerfile).expanduser()
        if not user_path.is_absolute():
            user_path = context.root / user_path
        try:
            user_text = user_path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise InvalidInput(
                f"Dockerfile {user_path} not found (dockerfile= is relative to the build "
                f"context {context.root}); give an existing file or dockerfile='auto'",
                dockerfile=str(user_path),
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read Dockerfile {user_path}: {exc}") from exc
        dockerfile = _derived_dockerfile(user_text, notebook_name, flow_name)
    extras[_DOCKERFILE_IN_CONTEXT] = dockerfile.encode()

    buildargs = dict(image.buildargs or {})
    context_hash = _content_hash(context.root, files, extras, buildargs, image.platform)
    tag = image.tag or context_hash[:_TAG_LENGTH]
    return BuildPlan(
        reference=f"{image.name}:{tag}",
        context_hash=context_hash,
        dockerfile=dockerfile,
        context=context,
        files=files,
        extras=extras,
        buildargs=buildargs,
        platform=image.platform,
        base_image=base_image,
        labels={LABEL_CONTEXT_HASH: context_hash},
        warnings=listing.warnings(),
    )


def _flow_notebook_bytes(
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
) -> tuple[str, bytes]:
    if isinstance(flow_notebook, Mapping):
        import nbformat

        from nbflows.notebooks.loading import notebook_to_json

        node = nbformat.from_dict(dict(flow_notebook))
        return "flow.ipynb", notebook_to_json(node).encode()
    path = Path(flow_notebook)
    _check_flow_notebook_name(path.name)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the flow notebook {path}: {exc}") from exc


@dataclass(frozen=True)
class ContextFiles:
    """The files of a build context that go to Docker, and those that do not and must be said."""

    #: Paths (files and folders, relative, sorted) sent to Docker.
    files: tuple[str, ...]
    #: Stores and Jupyter runtime files (or folders) left out to keep secrets out of images.
    left_out: tuple[str, ...] = ()
    #: (path, why) of files that cannot go into an image: named pipes, sockets, devices,
    #: unreadable files.
    skipped: tuple[tuple[str, str], ...] = ()

    def warnings(self) -> tuple[str, ...]:
        lines = [f"skipped {path}: {why}" for path, why in self.skipped]
        if self.left_out:
            shown = ", ".join(self.left_out[:10])
            more = f" and {len(self.left_out) - 10} more" if len(self.left_out) > 10 else ""
            lines.append(
                f"not sent to Docker: {shown}{more} (stores, databases and Jupyter runtime "
                "files never go into images; a '!PATH' line in .dockerignore takes a database "
                "file back)"
            )
        return tuple(lines)


def list_context_files(root: Path) -> ContextFiles:
    """What of the folder `root` a build sends to Docker.

    Left out: what `.gitignore` files ignore (at every level, and those of the enclosing git
    work tree, with `.git/info/exclude`), what `.dockerignore` excludes (Docker's own matcher),
    `_ALWAYS_IGNORED`, and, whatever those files say, the nbflows store and Jupyter's runtime
    files (this machine's Jupyter data and runtime folders, cookie secret, server and kernel
    files: they hold tokens and keys). Database files are left out unless `.dockerignore` takes
    them back with an exception. Named pipes, sockets and devices cannot be copied into an
    image: they are skipped (reading a pipe would block the build for ever) and said.
    """
    from docker.utils.build import PatternMatcher

    user_patterns: list[str] = []
    dockerignore = root / ".dockerignore"
    if dockerignore.is_file():
        # Parsed as the docker SDK parses it for `build(path=...)`.
        user_patterns = [
            line.strip()
            for line in dockerignore.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    docker = PatternMatcher([*_ALWAYS_IGNORED, *_DATABASE_PATTERNS, *user_patterns])
    without_databases = PatternMatcher([*_ALWAYS_IGNORED, *user_patterns])
    git = _GitIgnores(root)
    private = _private_folders(root)
    files: list[str] = []
    left_out: list[str] = []
    skipped: list[tuple[str, str]] = []

    def walk(folder: Path, rel_folder: str) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            skipped.append((rel_folder or ".", f"cannot be read ({exc.strerror or exc})"))
            return
        for entry in entries:
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if git.ignored(rel, is_dir):
                continue
            if _NEVER_SENT.match(entry.name) or (is_dir and Path(entry.path) in private):
                left_out.append(rel)
                continue
            if docker.matches(rel):
                if not is_dir and not without_databases.matches(rel):
                    left_out.append(rel)
                if is_dir and _may_hold_exceptions(docker, rel):
                    walk(Path(entry.path), rel)
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            special = _SPECIAL_FILES.get(stat.S_IFMT(mode))
            if special is not None:
                skipped.append((rel, f"{special} cannot go into an image"))
                continue
            if stat.S_ISREG(mode) and not os.access(entry.path, os.R_OK):
                skipped.append((rel, "cannot be read (permission denied)"))
                continue
            files.append(rel)
            if is_dir:
                walk(Path(entry.path), rel)

    walk(root, "")
    return ContextFiles(tuple(sorted(files)), tuple(left_out), tuple(skipped))


def _may_hold_exceptions(matcher: Any, folder: str) -> bool:
    """Whether an excluded folder must still be walked: an exception pattern (`!dir/keep`)
    may take files inside it back (Docker's own rule)."""
    return any(
        pattern.exclusion and pattern.cleaned_pattern.startswith(folder)
        for pattern in matcher.patterns
    )


def _private_folders(root: Path) -> set[Path]:
    """This machine's Jupyter data folder (the nbflows store, its logs) and runtime folder, when
    inside `root`."""
    from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir

    folders = {Path(jupyter_data_dir()), Path(jupyter_runtime_dir())}
    found = set()
    for folder in folders:
        try:
            resolved = folder.expanduser().resolve()
        except OSError:
            continue
        if resolved.is_relative_to(root):
            found.add(root / resolved.relative_to(root))
    return found


class _GitIgnores:
    """Git's ignore rules for paths under `root`: the `.gitignore` files of every folder from
    the enclosing git work tree's root down (deeper files win, the last matching line of a file
    wins, `!` takes a path back), and `.git/info/exclude`."""

    def __init__(self, root: Path) -> None:
        import pathspec

        self._pathspec = pathspec
        self._root = root
        self._specs: dict[Path, Any] = {}
        # Folders above `root` up to its git work tree's root: their rules apply too.
        self._above: list[Path] = []
        stop = {Path.home().resolve(), Path(root.anchor)}
        for folder in [root, *root.parents]:
            if folder != root:
                self._above.insert(0, folder)
            if (folder / ".git").exists():
                self._load(folder, extra=folder / ".git" / "info" / "exclude")
                break
            if folder in stop:
                self._above = []
                break

    def _load(self, folder: Path, extra: Path | None = None) -> Any:
        if folder not in self._specs:
            lines: list[str] = []
            for path in (extra, folder / ".gitignore"):
                if path is not None and path.is_file():
                    try:
                        lines += path.read_text(encoding="utf-8", errors="replace").splitlines()
                    except OSError:
                        continue
            self._specs[folder] = self._pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[folder]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Whether `rel` (relative to `root`, its parent folders not ignored) is ignored."""
        parts = rel.split("/")
        # (folder, the path relative to it), from the outermost folder to the path's own.
        folders = [(f, [*self._root.relative_to(f).parts, *parts]) for f in self._above]
        folders += [(self._root.joinpath(*parts[:n]), parts[n:]) for n in range(len(parts))]
        for folder, sub in reversed(folders):
            spec = self._load(folder)
            if spec is None:
                continue
            verdict = spec.check_file("/".join(sub) + ("/" if is_dir else "")).include
            if verdict is not None:
                return bool(verdict)
        return False


def _content_hash(
    root: Path,
    files: Iterable[str],
    extras: Mapping[str, bytes],
    buildargs: Mapping[str, str],
    platform: str | None,
) -> str:
    digest = hashlib.sha256()

    def add(*parts: bytes) -> None:
        for part in parts:
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)

    for rel in files:
        path = root / rel
        if path.is_symlink():
            add(b"L", rel.encode(), os.readlink(path).encode())
        elif path.is_dir():
            add(b"D", rel.encode())
        elif path.is_file():
            # The executable bit matters in the image; times and owners do not.
            executable = b"x" if os.access(path, os.X_OK) else b"-"
            add(b"F", rel.encode(), executable, path.read_bytes())
    for name in sorted(extras):
        add(b"E", name.encode(), extras[name])
    add(b"A", json.dumps(dict(buildargs), sort_keys=True).encode())
    add(b"P", (platform or "").encode())
    return digest.hexdigest()


def _write_context_tar(plan: BuildPlan, fileobj: IO[bytes]) -> None:
    root = plan.context.root
    with tarfile.open(mode="w", fileobj=fileobj) as archive:
        for rel in plan.files:
            full = root / rel
            info = archive.gettarinfo(str(full), arcname=rel)
            if info is None:  # a socket: Docker skips those too
                continue
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isfile():
                with open(full, "rb") as fh:
                    archive.addfile(info, fh)
            else:
                archive.addfile(info)
        for name, data in sorted(plan.extras.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------------------------
# Building and pushing


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile step of a build, and whether Docker took it from its layer cache."""

    number: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    """`built` is False when an image of the same content existed and nothing was built."""

    reference: str
    built: bool
    seconds: float
    steps: list[BuildStep] = field(default_factory=list)
    image_id: str | None = None
    context_hash: str = ""


def docker_client() -> docker.DockerClient:
    """A client for the engine of the environment (`DOCKER_HOST`, else the local socket).

    Raises `InvalidInput` saying how to get one when no engine answers.
    """
    import docker  # heavy (requests, urllib3): only where Docker is used

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the local socket"
        raise InvalidInput(
            f"no Docker engine reachable at {where} ({exc}); start the Docker engine, or set "
            "DOCKER_HOST to a reachable one",
        ) from exc
    return client


def build_image(
    image: DeploymentImage,
    context: BuildContext,
    flow_notebook: str | os.PathLike[str] | NotebookNode | Mapping[str, Any],
    progress: Progress | None = None,
    client: docker.DockerClient | None = None,
    *,
    flow_name: str | None = None,
    package: NbflowsPackage | None = None,
) -> BuildResult:
    """Build the deployment image of `flow_notebook` from `context` (see `plan_build`).

    Nothing is built when the engine already has an image with the planned reference and the
    same content hash (`built=False`). Build output lines go to `progress` as they come.
    Raises `ImageBuildError` naming the failing step and its last output lines; for a base
    image that is neither on the engine nor pullable, the error says how to choose another.
    """
    import docker

    started = time.monotonic()
    say = progress or (lambda _line: None)
    plan = plan_build(image, context, flow_notebook, flow_name=flow_name, package=package)
    for warning in plan.warnings:
        say(warning)
    client = client or docker_client()

    existing = _local_image(client, plan.reference)
    if existing is not None and existing.labels.get(LABEL_CONTEXT_HASH) == plan.context_hash:
        say(f"Image {plan.reference} is up to date: nothing to build")
        return BuildResult(
            reference=plan.reference,
            built=False,
            seconds=time.monotonic() - started,
            image_id=existing.id,
            context_hash=plan.context_hash,
        )

    say(f"Building image {plan.reference} from {plan.context.root}")
    output = _BuildOutput(say)
    with tempfile.TemporaryFile() as fileobj:
        _write_context_tar(plan, fileobj)
        fileobj.seek(0)
        options: dict[str, Any] = {
            "fileobj": fileobj,
            "custom_context": True,
            "dockerfile": _DOCKERFILE_IN_CONTEXT,
            "tag": plan.reference,
            "labels": dict(plan.labels),
            "rm": True,
            "forcerm": True,
            "decode": True,
        }
        if plan.buildargs:
            options["buildargs"] = dict(plan.buildargs)
        if plan.platform:
            options["platform"] = plan.platform
        try:
            for chunk in client.api.build(**options):
                output.feed(chunk)
        except docker.errors.APIError as exc:
            # Refused before any step ran: a Dockerfile that does not parse, a bad platform...
            raise ImageBuildError(
                f"Docker refused to build {plan.reference}: {exc.explanation or exc}",
                step=output.step,
                output=output.lines,
            ) from exc
    output.finish()
    if output.error is not None:
        raise _build_error(plan, output)
    return BuildResult(
        reference=plan.reference,
        built=True,
        seconds=time.monotonic() - started,
        steps=output.steps,
        image_id=output.image_id,
        context_hash=plan.context_hash,
    )


def push_image(
    reference: str,
    progress: Progress | None = None,
    client: docker.DockerClient | None = None,
) -> None:
    """Push `reference` with the user's Docker credentials (`~/.docker/config.json` and its
    credential helpers). Raises `ImagePushError` with the registry's message on refusal."""
    import docker

    say = progress or (lambda _line: None)
    repository, tag = split_image_reference(reference)
    client = client or docker_client()
    say(f"Pushing {reference}")
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                message = detail.get("message") or chunk.get("error") or str(chunk)
                raise ImagePushError(f"pushing {reference} failed: {message}", reference=reference)
            status = chunk.get("status")
            if status:
                say(f"{chunk['id']}: {status}" if chunk.get("id") else status)
    except docker.errors.APIError as exc:
        raise ImagePushError(
            f"pushing {reference} failed: {exc.explanation or exc}", reference=reference
        ) from exc


def _local_image(client: docker.DockerClient, reference: str) -> Any:
    import docker

    try:
        return client.images.get(reference)
    except docker.errors.ImageNotFound:
        return None


def split_image_reference(reference: str) -> tuple[str, str | None]:
    """The one reading of an image reference: `registry:5000/team/x:v1` -> (`registry:5000/team/x`,
    `v1`); a registry port is not a tag, a digest (`x@sha256:...`) stays whole; no tag -> None."""
    if "@" in reference:
        return reference, None
    head, sep, tail = reference.rpartition(":")
    if sep and head and "/" not in tail:
        return head, tail or None
    return reference, None


class _BuildOutput:
    """Follows the classic builder's JSON stream: lines to `progress`, steps and their cache
    hits, the image id, and the error with the output of the step that failed."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._partial = ""
        self._cached = False
        self.steps: list[BuildStep] = []
        self.step = ""
        self._number = 0
        self._open = False
        self.lines: list[str] = []
        self.image_id: str | None = None
        self.error: str | None = None

    def feed(self, chunk: Mapping[str, Any]) -> None:
        if "stream" in chunk:
            self._partial += str(chunk["stream"])
            *complete, self._partial = self._partial.split("\n")
            for line in complete:
                self._line(line.rstrip("\r"))
        elif "status" in chunk:  # pulling the base image
            status = f"{chunk.get('id', '')}: {chunk['status']}".lstrip(": ")
            self._line(f"{status} {chunk.get('progress', '')}".rstrip())
        if "aux" in chunk and isinstance(chunk["aux"], Mapping) and "ID" in chunk["aux"]:
            self.image_id = str(chunk["aux"]["ID"])
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = str(detail.get("message") or chunk.get("error") or chunk)
            self._line(self.error)

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self._close_step()

    def _line(self, line: str) -> None:
        # The engine colours a step's stderr with ANSI codes that can land mid-line between
        # stdout and stderr chunks; users and error messages want the plain text.
        line = _ANSI_RE.sub("", line)
        self._progress(line)
        step = _STEP_RE.match(line)
        if step:
            self._close_step()
            self._open = True
            self._number = int(step.group(1))
            self.step = step.group(3)
            self._cached = self.step.upper().startswith("FROM ")
            self.lines = []
            return
        if line.strip() == "---> Using cache":
            self._cached = True
        self.lines.append(line)
        del self.lines[: -_OUTPUT_LINES_KEPT * 4]

    def _close_step(self) -> None:
        if self._open and self.error is None:
            self.steps.append(BuildStep(self._number, self.step, self._cached))
        self._open = False


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _build_error(plan: BuildPlan, output: _BuildOutput) -> ImageBuildError:
    step = output.step
    tail = [line for line in output.lines if line.strip()][-_OUTPUT_LINES_KEPT:]
    if step.upper().startswith("FROM "):
        base = step.split()[1] if len(step.split()) > 1 else step
        return ImageBuildError(
            f"The base image {base} cannot be found: it is not on this Docker engine and pulling "
            f"it failed ({output.error}). Pull or build it first, or choose another base image: "
            "DeploymentImage(base_image=...), the NBFLOWS_BASE_IMAGE environment variable, or "
            "the work pool's base_image.",
            step=step,
            output=tail,
        )
    shown = "\n".join(f"  {line}" for line in tail)
    if not step:  # refused before the first step, e.g. a Dockerfile that does not parse
        return ImageBuildError(
            f"Docker could not build {plan.reference}: {output.error}", step=step, output=tail
        )
    return ImageBuildError(
        f"Building image {plan.reference} failed at step '{step}': {output.error}\n"
        f"Last output of that step:\n{shown}",
        step=step,
        output=tail,
    )
