"""Acceptance journeys: the product used through its public faces only (CLI, notebook in a real
kernel, REST API, browser) against a server started the way the README starts it.

`readme_server` starts `nbflows server --port P --root-dir ROOT` (what `make server` runs) or
`jupyter lab --port P --ServerApp.root_dir=ROOT` (what `make run` runs) with the *default* set-up:
no store URL, no worker or scheduler settings. Each journey gets its own home, so the default
SQLite store under the Jupyter data dir and the runtime dir (where the CLI discovers the server)
are private to it. The CLI is then run with `Journey.cli(...)`, which, like a user's second
terminal, sets no URL or token: it finds the server by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import NBFLOWS_ENV, NOTEBOOKS, free_port

BIN = Path(sys.executable).parent


@dataclass
class Journey:
    """One user's machine: a home, a notebooks folder, and the server they started."""

    home: Path
    root: Path
    env: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    token: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api(self) -> str:
        return f"{self.url}nbflows/api/"

    def start(
        self, face: str = "server", args: list[str] | None = None, port: int | None = None
    ) -> Journey:
        """Start the server as the README does; wait until its API answers."""
        self.port = port or self.port or free_port()
        if face == "server":
            cmd = [str(BIN / "nbflows"), "server", "--port", str(self.port)]
            cmd += ["--root-dir", str(self.root)]
        elif face == "lab":
            cmd = [str(BIN / "jupyter"), "lab", f"--port={self.port}"]
            cmd += [f"--ServerApp.root_dir={self.root}", "--no-browser"]
        else:
            raise ValueError(face)
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        cmd += ["--port-retries=0", *(args or [])]
        self.log_path = self.home / f"server-{self.port}-{int(time.time() * 1000)}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.root,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            self.token = self._token() or self.token
            if self.token:
                try:
                    if self.http("GET", "health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer in 90 s:\n{self.log()}")

    def _token(self) -> str:
        match = re.search(r"[?&]token=([0-9a-f]{16,})", self.log())
        return match.group(1) if match else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> None:
        """Stop the server (SIGTERM, like Ctrl-C; SIGKILL for a crash) and its children."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, self.api + path, headers=headers, timeout=60, **kwargs)

    def cli(
        self, *args: str, timeout: float = 180, check: bool = False, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`nbflows ARGS` in the user's second terminal: no URL or token, discovery finds the
        server."""
        result = subprocess.run(
            [str(BIN / "nbflows"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **self.extra_env},
            cwd=cwd or self.root.parent,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"nbflows {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def wait_for(
        self, what: str, predicate: Callable[[], Any], timeout: float = 120, every: float = 0.2
    ) -> Any:
        """Poll until `predicate()` is truthy; `timeout` only catches "never"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(every)
        raise AssertionError(f"never: {what} (waited {timeout:.0f} s)\nserver log:\n{self.log()}")


def make_journey(tmp_path: Path, notebooks: Path | None = NOTEBOOKS) -> Journey:
    """A fresh 'machine' for one user: HOME, Jupyter dirs and a notebooks folder (a copy of the
    repository's `notebooks/` unless told otherwise)."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "project" / "notebooks"
    if notebooks is not None:
        shutil.copytree(notebooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        root.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV}
    env.pop("NBFLOWS_DATABASE_URL", None)
    env.update(
        HOME=str(home),
        JUPYTER_DATA_DIR=str(home / ".local/share/jupyter"),
        JUPYTER_RUNTIME_DIR=str(home / ".local/share/jupyter/runtime"),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        PYTHONUNBUFFERED="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return Journey(home=home, root=root, env=env)


@pytest.fixture
def journey(tmp_path: Path) -> Iterator[Journey]:
    """A fresh user machine; call `journey.start()` to start the server as the README does."""
    j = make_journey(tmp_path)
    try:
        yield j
    finally:
        j.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "journeys" in str(item.path):
            item.add_marker(pytest.mark.journey)
