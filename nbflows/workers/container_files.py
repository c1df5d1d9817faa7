"""Files in and out of a run container: the run's image pulled as `image_pull_policy` says, the
run folder put in as an archive, and the executed notebook, result and output folder copied out.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
import time
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from nbflows.workers.container_runner import OUTPUT_DIR, OUTPUT_NOTEBOOK_FILE, RESULT_FILE, RUN_DIR
from nbflows.workers.reporting import RunReporter

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

# Pull progress of single layers is noise in a run's log; the other statuses are kept.
_PULL_NOISE = re.compile(r"^(Downloading|Extracting|Waiting|Verifying|Pulling fs layer)")


def ensure_image(
    engine: docker.DockerClient, reference: str, policy: str, reporter: RunReporter
) -> str | None:
    """Make sure the engine has `reference` as `policy` says; None, or why the run cannot start."""
    import docker

    try:
        engine.images.get(reference)
        present = True
    except docker.errors.ImageNotFound:
        present = False
    if policy == "Never":
        if present:
            return None
        return (
            f"image {reference} not found locally (image_pull_policy Never): build it on this "
            "worker's Docker engine (nbflows deploy --image builds where you deploy), or set the "
            "job variable image_pull_policy to IfNotPresent or Always to pull it from a registry"
        )
    if policy == "IfNotPresent" and present:
        return None
    from nbflows.packaging.images import split_image_reference

    repository, tag = split_image_reference(reference)
    reporter.log(f"pulling image {reference} (image_pull_policy {policy})")
    try:
        for chunk in engine.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                raise docker.errors.APIError(str(detail.get("message") or chunk.get("error")))
            status = str(chunk.get("status") or "")
            if status and not _PULL_NOISE.match(status):
                reporter.log(f"{chunk['id']}: {status}" if chunk.get("id") else status)
    except docker.errors.APIError as exc:
        where = "" if present else "; it is not on this worker's Docker engine either"
        return (
            f"pulling image {reference} failed (image_pull_policy {policy}): "
            f"{exc.explanation or exc}{where}"
        )
    return None


def run_dir_archive(files: Mapping[str, bytes]) -> bytes:
    """A tar of `RUN_DIR` with `files`, writable by any user the image runs as."""
    buffer = io.BytesIO()
    now = time.time()
    folder = RUN_DIR.strip("/")
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in (folder, f"{folder}/{PurePosixPath(OUTPUT_DIR).name}"):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o777, now
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o666, now
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def copy_out(container: Container) -> dict[str, Any]:
    """The executed notebook and the runner's result, as far as the container has them."""
    import docker

    try:
        chunks, _ = container.get_archive(RUN_DIR)
        data = b"".join(chunks)
    except docker.errors.NotFound:
        return {}
    found: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
        for member in archive.getmembers():
            name = PurePosixPath(member.name).name
            if name not in (OUTPUT_NOTEBOOK_FILE, RESULT_FILE) or not member.isfile():
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            try:
                found[name] = json.loads(handle.read())
            except ValueError:
                continue  # cut short (the container was killed while writing it)
    return found


def copy_output_dir(container: Container, reporter: RunReporter) -> str:
    """The container's output folder copied to a new folder here (empty when it has none).
    Only regular files are taken, by names inside the folder: a run cannot place links or
    write outside it on the worker's machine."""
    import tempfile

    import docker

    target = tempfile.mkdtemp(prefix="nbflows-output-")
    top = PurePosixPath(OUTPUT_DIR).name
    with tempfile.TemporaryFile() as spool:
        try:
            chunks, _ = container.get_archive(OUTPUT_DIR)
            for chunk in chunks:
                spool.write(chunk)
        except docker.errors.NotFound:
            return target
        except docker.errors.APIError as exc:
            reporter.log(f"could not copy the run's output folder: {exc}", logging.WARNING)
            return target
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r") as archive:
            for member in archive.getmembers():
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 2 or parts[0] != top or ".." in parts:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                path = os.path.join(target, *parts[1:])
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with handle, open(path, "wb") as out:
                    while block := handle.read(1024 * 1024):
                        out.write(block)
    return target
