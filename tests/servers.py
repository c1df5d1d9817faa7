"""A real Jupyter server with the nbflows extension, in a subprocess (tests and benchmarks)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DATA = Path(__file__).resolve().parent / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running `jupyter server` with nbflows; `root` is its root dir, `db_url` its store."""

    url: str
    token: str
    root: Path
    db_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return f"{self.url}nbflows/api/"

    def client(self) -> Any:
        from nbflows.client import get_client

        return get_client(url=self.api, token=self.token)

    def http(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.token}"}
        return httpx.request(method, self.api + path, headers=headers, timeout=60, **kwargs)

    def cli(
        self, *args: str, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the `nbflows` CLI against this server, as a user would."""
        env = {
            **os.environ,
            **self.env,
            "NBFLOWS_API_URL": self.api,
            "NBFLOWS_API_TOKEN": self.token,
        }
        return subprocess.run(
            [sys.executable, "-m", "nbflows.cli.app", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd or self.root,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp: Path,
    *,
    embedded_worker: bool = True,
    db_url: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    root: Path | None = None,
) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    root = root or tmp / "root"
    if not root.exists():
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    db_url = db_url or f"sqlite:///{tmp / 'nbflows.db'}"
    port = free_port()
    token = secrets.token_hex(16)
    runtime = tmp / "runtime"
    runtime.mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        "NBFLOWS_DATABASE_URL": db_url,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--port-retries=0",
        "--ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.jpserver_extensions={'nbflows.extension': True}",
        f"--NBFlowsExtension.embedded_worker={embedded_worker}",
        "--NBFlowsExtension.scheduler_interval=1",
        # One list item per option: a list literal here would reach the worker as one string.
        "--NBFlowsExtension.embedded_worker_args=--heartbeat-interval=1",
        *(extra_args or []),
    ]
    log_path = tmp / f"server-{port}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=root)
    server = Server(
        url=f"http://127.0.0.1:{port}/",
        token=token,
        root=root,
        db_url=db_url,
        process=proc,
        log_path=log_path,
        env={"NBFLOWS_DATABASE_URL": db_url, "JUPYTER_RUNTIME_DIR": str(runtime)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter server exited early:\n{server.log()}")
        try:
            if server.http("GET", "health").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"jupyter server did not answer in 60 s:\n{server.log()}")
