"""Loading, checking and (de)serialising notebooks, and the kernels they run in.

Every notebook nbflows runs or freezes into a deployment goes through `load_notebook` or
`notebook_from_json`, so bad input (a path outside the server's root, a missing file, a file that
is not a notebook, a notebook without a kernel) is refused in one place, with a message that says
what to do. Notebooks of every nbformat version are read as version 4.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.corpus.words import generate_corpus_id

from nbflows.errors import InvalidInput, NotFound

__all__ = [
    "installed_kernelspec",
    "kernel_name",
    "load_notebook",
    "notebook_from_json",
    "notebook_to_json",
    "resolve_kernel_name",
    "strip_outputs",
    "with_kernel",
]


def load_notebook(
    path: str | Path, root_dir: str | Path | None = None, kernel: str | None = None
) -> tuple[Path, NotebookNode]:
    """Read the notebook at `path` and return `(resolved_path, notebook)`.

    A relative `path` is taken relative to `root_dir` when given (else to the current directory).
    With a `root_dir`, a path that resolves outside it (also through `..` or a symlink) is refused.
    `kernel` names the kernel to run the notebook in (papermill's `-k`): the notebook's
    kernelspec becomes that kernel's (see `with_kernel`).

    Raises `InvalidInput` for a path outside `root_dir`, a directory, a file that is not a
    `.ipynb` notebook or cannot be read, a `kernel` that is not installed, and a notebook without
    `metadata.kernelspec.name` when no `kernel` is given; `NotFound` for a missing file.
    """
    candidate = Path(path).expanduser()
    root: Path | None = None
    if root_dir is not None:
        root = Path(root_dir).expanduser().resolve()
        if not candidate.is_absolute():
            candidate = root / candidate
    resolved = candidate.resolve()

    # Checked before existence so that a request cannot probe which files exist outside the root.
    if root is not None and not resolved.is_relative_to(root):
        raise InvalidInput(
            f"{path} is outside the server's root directory {root}; "
            "use a notebook inside that directory (paths are relative to it)",
            path=str(path),
            root_dir=str(root),
        )
    if not resolved.exists():
        raise NotFound(f"Notebook not found: {resolved}", path=str(resolved))
    if resolved.is_dir():
        raise InvalidInput(f"{resolved} is a directory, not a notebook", path=str(resolved))
    if resolved.suffix != ".ipynb":
        raise InvalidInput(
            f"{resolved} is not a notebook: expected a .ipynb file", path=str(resolved)
        )
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"Cannot read {resolved}: {exc}", path=str(resolved)) from exc

    try:
        nb = notebook_from_json(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{resolved}: {exc.message}", path=str(resolved)) from exc

    if kernel:
        nb = with_kernel(nb, kernel)
    if not kernel_name(nb):
        raise InvalidInput(
            f"{resolved} has no kernel (metadata.kernelspec.name is missing): name the kernel to "
            "run it in (nbflows deploy --kernel python3), or open it in Jupyter and pick a kernel, "
            "then save it, or set metadata.kernelspec in the notebook file",
            path=str(resolved),
        )
    return resolved, nb


def with_kernel(nb: NotebookNode, kernel: str) -> NotebookNode:
    """A copy of `nb` whose kernelspec is the installed kernel `kernel`'s (papermill's `-k`).

    `InvalidInput` naming the installed kernels when there is no such kernel.
    """
    spec = installed_kernelspec(kernel)
    changed = copy.deepcopy(nb)
    changed.setdefault("metadata", nbformat.from_dict({}))["kernelspec"] = nbformat.from_dict(spec)
    return changed


def resolve_kernel_name(name: str) -> str:
    """`name` as Jupyter reads it: `python` is the native Python kernel, `python3`.

    jupyter_client's KernelManager maps the name so, but its KernelSpecManager does not.
    """
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    return NATIVE_KERNEL_NAME if name == "python" else name


def installed_kernelspec(name: str) -> dict[str, str]:
    """`{"name", "display_name", "language"}` of the installed kernel `name` (`python` is
    `python3`). `InvalidInput` naming the installed kernels when there is none."""
    return dict(_installed_kernelspec(resolve_kernel_name(name)))


@functools.lru_cache(maxsize=64)
def _installed_kernelspec(name: str) -> dict[str, str]:
    # Kernelspecs are read from disk; a worker asks once per run. Misses are not cached.
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        installed = sorted(manager.find_kernel_specs())
        raise InvalidInput(
            f"No kernel named {name!r} is installed here "
            f"(installed kernels: {', '.join(installed) or 'none'}).",
            kernel=name,
            installed=installed,
        ) from None
    return {"name": name, "display_name": spec.display_name, "language": spec.language}


def kernel_name(nb: NotebookNode) -> str | None:
    """The notebook's `metadata.kernelspec.name`, or None when it has none."""
    kernelspec = nb.get("metadata", {}).get("kernelspec") or {}
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    return name if isinstance(name, str) and name else None


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    """A deep copy of `nb` whose code cells have no outputs and no execution counts."""
    stripped = copy.deepcopy(nb)
    for cell in stripped.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return stripped


def notebook_to_json(nb: NotebookNode) -> str:
    """Serialise a notebook as the JSON text of a `.ipynb` file."""
    return nbformat.writes(nb)


def notebook_from_json(text: str | bytes) -> NotebookNode:
    """Parse `.ipynb` JSON text into a v4 notebook; `InvalidInput` when it is not a valid notebook.

    Missing cell ids (common in notebooks written by older tools) are filled in rather than
    refused, as Jupyter does when it opens such a file.
    """
    # nbformat.reads() logs validation errors instead of raising, and warns about missing cell ids
    # (also in validator.normalize()); here an invalid notebook must be refused and a missing id
    # repaired without a warning.
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("not a notebook: the file is not JSON") from exc
    if not isinstance(data, dict) or "nbformat" not in data:
        raise InvalidInput("not a notebook: the JSON has no 'nbformat' version field")
    try:
        major, minor = nbformat.reader.get_version(data)
        if major not in nbformat.versions:
            raise InvalidInput(f"not a valid notebook: unsupported nbformat version {major!r}")
        nb = nbformat.versions[major].to_notebook_json(data, minor=minor)
        # Each nbformat version has its own NotebookNode class: take the v4 one.
        nb = nbformat.from_dict(nbformat.convert(nb, 4))
        _repair_cell_ids(nb)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        reason = str(exc.message if hasattr(exc, "message") else exc).splitlines()[0]
        raise InvalidInput(f"not a valid notebook: {reason}") from exc
    except (KeyError, AttributeError) as exc:
        # A missing key surfaces as KeyError(key), or AttributeError(key) from NotebookNode.
        key = exc.args[0] if exc.args else None
        if isinstance(key, str) and key.isidentifier():
            raise InvalidInput(f"not a valid notebook: it has no {key!r} entry") from exc
        raise InvalidInput(f"not a valid notebook: {exc}") from exc
    except (ValueError, TypeError, nbformat.NBFormatError) as exc:
        raise InvalidInput(f"not a valid notebook: {exc}") from exc
    if not isinstance(nb, NotebookNode) or "cells" not in nb:
        raise InvalidInput("not a valid notebook: it has no cells list")
    return nb


def _repair_cell_ids(nb: NotebookNode) -> None:
    """Give every cell of a v4.5+ notebook a unique id (ids exist since nbformat 4.5)."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    cells = nb.get("cells")
    if not isinstance(cells, list):
        return
    seen: set[str] = set()
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or cell_id in seen:
            cell_id = generate_corpus_id()
            cell["id"] = cell_id
        seen.add(cell_id)
