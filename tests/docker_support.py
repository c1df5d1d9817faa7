"""Helpers for tests that need a Docker engine (plain functions: test modules make fixtures).

Without an engine those tests are skipped, except under CI (`CI=true`), where `.ci/run` starts
one (`.ci/docker-engine.sh`) and a missing engine is a failure, not a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The image `.ci/base-image.sh` makes by default: Debian bookworm with python3, venv and pip.
LOCAL_BASE_IMAGE = "nbflows-python:bookworm"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI where Docker must be there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run must start it with .ci/docker-engine.sh)")
    pytest.skip(reason)


def docker_client() -> Any:
    """A docker client for a reachable engine; skips (fails under CI) when there is none."""
    from nbflows.errors import InvalidInput
    from nbflows.packaging.docker_build import docker_client as connect

    try:
        return connect()
    except InvalidInput as exc:
        unavailable(f"no Docker engine reachable: {exc.message}")


def local_base_image(client: Any, name: str = LOCAL_BASE_IMAGE) -> str:
    """The name of a local Python base image, made by `.ci/base-image.sh` when missing
    (about 45 s, once per machine: the script does nothing when the image exists)."""
    import docker

    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    done = subprocess.run(
        ["bash", str(REPO_ROOT / ".ci" / "base-image.sh"), name],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        unavailable(
            f"could not make the base image {name} with .ci/base-image.sh:\n"
            + (done.stdout + done.stderr)[-3000:]
        )
    return name


def remove_image(client: Any, reference: str) -> None:
    """Remove a test image but keep its parent layers, which later builds use as cache."""
    import docker

    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(reference, force=True, noprune=True)
