"""Shared fixtures: a real Jupyter server with the nbflows extension, in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import DATA, NOTEBOOKS, REPO, Server, free_port, start_server

__all__ = ["DATA", "NOTEBOOKS", "REPO", "Server", "free_port", "start_server"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with the embedded worker (process pools), its own SQLite store and root."""
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server without the embedded worker: runs stay Scheduled until a worker claims them."""
    srv = start_server(tmp_path, embedded_worker=False)
    try:
        yield srv
    finally:
        srv.stop()
