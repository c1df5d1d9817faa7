"""Shared fixtures: a real Jupyter server with the nbflows extension, in a subprocess."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbflows.store.db import Database

from .pg_support import postgres_server
from .servers import DATA, NOTEBOOKS, REPO, Server, free_port, start_server

__all__ = ["DATA", "NOTEBOOKS", "REPO", "Server", "free_port", "start_server"]

_CPU_AT_START = pytest.StashKey[tuple[int, int] | None]()

# Every server the tests start checks each answer against its declared model and logs a
# mismatch (off by default: it costs each request time on the server's loop).
os.environ["NBFLOWS_CHECK_REPLIES"] = "1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server with the embedded worker (process pools), its own SQLite store and root."""
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated store, on SQLite and on PostgreSQL (a cluster of its own)."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'nbflows.db'}")
        yield db
        db.dispose()
    else:
        with postgres_server() as url:
            db = Database(url)
            yield db
            db.dispose()


@pytest.fixture
def bare_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server without the embedded worker: runs stay Scheduled until a worker claims them."""
    srv = start_server(tmp_path, embedded_worker=False)
    try:
        yield srv
    finally:
        srv.stop()


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat; None elsewhere."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_CPU_AT_START] = _cpu_ticks()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # How busy the cores were over the run says whether more xdist workers would help (waiting
    # tests) or hurt (CPU-bound ones): printed for the CI log.
    config = terminalreporter.config
    start, end = config.stash.get(_CPU_AT_START, None), _cpu_ticks()
    if hasattr(config, "workerinput") or start is None or end is None or end[1] == start[1]:
        return
    busy = (end[0] - start[0]) / (end[1] - start[1])
    terminalreporter.write_line(f"machine CPU busy during the tests: {busy:.0%} of all cores")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Under --dist loadgroup, xdist puts a test's group in its node id ("...@group"). A pytest it
    # cannot do that with ignores every xdist_group without a word (pytest-xdist#1386): shared
    # servers, image builds and Dask clusters set up once per worker, grouped tests racing.
    if not (hasattr(config, "workerinput") and config.getoption("loadgroup", False)):
        return
    lost = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if lost:
        message = (
            f"--dist loadgroup ignored the xdist_group of {len(lost)} tests (e.g. {lost[0]}): "
            "this pytest-xdist cannot group tests under this pytest; see the pin in pyproject.toml"
        )
        # On stderr too: xdist's controller reports a worker's UsageError as its own
        # INTERNALERROR, without the message.
        print(message, file=sys.stderr)
        raise pytest.UsageError(message)
