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
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DATA = Path(__file__).resolve().parent / "data"

#: What points a client or kernel at a server or a flow run (set inside runs and Jupyter kernels).
NBFLOWS_ENV = (
    "NBFLOWS_FLOW_RUN_ID",
    "NBFLOWS_FLOW_NAME",
    "NBFLOWS_RUN_KIND",
    "NBFLOWS_API_URL",
    "NBFLOWS_API_TOKEN",
    "JPY_SESSION_NAME",
)


def isolate_from_servers(monkeypatch: pytest.MonkeyPatch, runtime_dir: Path) -> None:
    """Unset `NBFLOWS_ENV` and point Jupyter at `runtime_dir`, so that no server of this user is
    discovered: a client finds a server only when the test says which."""
    for name in NBFLOWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime_dir))


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON of a response that must have `status` (the response text when it has not)."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None


#: Seconds a server may take to answer its first request.
START_TIMEOUT = 180.0


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
        from nbflows.client.rest import get_client

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
    module: str = "jupyter_server",
    embedded_worker: bool = True,
    db_url: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    root: Path | None = None,
) -> Server:
    """Start `python -m {module}` (`jupyter_server`, or `jupyterlab` for JupyterLab) with the
    nbflows extension on a free port, its root a copy of `notebooks/` unless `root` is given,
    and return it once its health endpoint answers."""
    tmp.mkdir(parents=True, exist_ok=True)
    root = root or tmp / "root"
    if not root.exists():
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    db_url = db_url or f"sqlite:///{tmp / 'nbflows.db'}"
    port = free_port()
    token = secrets.token_hex(16)
    runtime = tmp / "runtime"
    runtime.mkdir(exist_ok=True)
    # The server under test must not find the server or the run of the shell running the tests.
    full_env = {
        **{k: v for k, v in os.environ.items() if k not in NBFLOWS_ENV},
        "NBFLOWS_DATABASE_URL": db_url,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        # Each server keeps the files of its runs in a folder of its own.
        "NBFLOWS_RESULT_STORE_URL": str(tmp / "results"),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    args = [
        sys.executable,
        "-m",
        module,
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
    deadline = time.monotonic() + 180  # a loaded 2-core machine takes its time
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited early:\n{server.log()}")
        try:
            if server.http("GET", "health").status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{module} did not answer in 180 s:\n{server.log()}")
