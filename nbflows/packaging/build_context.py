"""The build context: the project folder sent to Docker, and the files in it as Docker sees them.

`prepare_build_context(notebook)` finds the folder and refuses one that would leave out the
notebook or files it opens by relative path; `list_context_files` lists what is sent
(`.dockerignore` honoured, secrets of the building machine never sent).
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from nbflows.errors import InvalidInput
from nbflows.packaging.images import CONTEXT_EXTRAS_DIR, PROJECT_MARKERS

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = [
    "BuildContext",
    "ContextFiles",
    "find_build_context",
    "list_context_files",
    "prepare_build_context",
]

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


def is_special(path: str) -> bool:
    """A named pipe, socket or device: copying or reading one blocks or fails."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) in _SPECIAL_FILES
    except OSError:
        return False


def walk_files(root: Path, skip: Callable[[str, bool], bool]) -> Iterator[Path]:
    """Regular files (or links to them) under `root`: a named pipe or a socket is no source.
    `skip(name, top)` leaves a name out (`top`: it is directly under `root`)."""
    for folder, dirs, files in os.walk(root):
        top = Path(folder) == root
        dirs[:] = sorted(d for d in dirs if not skip(d, top))
        for name in sorted(files):
            if not skip(name, top) and os.path.isfile(os.path.join(folder, name)):
                yield Path(folder) / name


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
