"""nbflows inside the image: the running nbflows (or the wheel `NBFLOWS_IMAGE_WHEEL` names),
built into a wheel that the image installs; wheels are cached by a digest of the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from nbflows.errors import InvalidInput
from nbflows.packaging.build_context import is_special, walk_files
from nbflows.packaging.images import CONTEXT_EXTRAS_DIR, OUTPUT_LINES_KEPT, ImageBuildError

__all__ = ["NbflowsPackage", "nbflows_package"]


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
    for path in walk_files(source, _skip_source):
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
                if _skip_source(n, Path(folder) == source) or is_special(os.path.join(folder, n))
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
                "the image:\n" + "\n".join(lines[-OUTPUT_LINES_KEPT:]),
                step=f"pip wheel {source}",
                output=lines[-OUTPUT_LINES_KEPT:],
            )
        try:
            out.rename(cache)
        except OSError:  # another build finished the same wheel first
            shutil.rmtree(out, ignore_errors=True)
    return sorted(cache.glob("nbflows-*.whl"))[0]


def _cache_dir() -> Path:
    configured = os.environ.get("NBFLOWS_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbflows"
