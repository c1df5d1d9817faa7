"""A real Dask cluster on loopback for tests and benchmarks: `dask scheduler` and `dask worker`
processes, each worker in a working directory (and TMPDIR) of its own so that nothing passes
between them or from the test through the file system."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .servers import free_port

__all__ = ["DaskCluster", "DaskWorkerProcess"]

_BIN = Path(sys.executable).parent


@dataclass
class DaskWorkerProcess:
    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """`kill -9` of the worker and of what it started (its kernels)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill_worker_only(self) -> None:
        """`kill -9` of the Dask worker process alone: its kernels are left as orphans, as when
        a machine's worker dies (they are reaped by `kill()` at the end)."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


@dataclass
class DaskCluster:
    """`dask scheduler` on a free loopback port and the workers added with `add_worker`."""

    folder: Path
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[DaskWorkerProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "scheduler.log").open("wb")
        self.scheduler = subprocess.Popen(
            [
                str(_BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
                "--no-show",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env=self._env(self.folder),
            start_new_session=True,
        )
        return self

    def add_worker(self, name: str, *args: str, nthreads: int = 2) -> DaskWorkerProcess:
        folder = self.folder / name
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        log_path = folder / "worker.log"
        process = subprocess.Popen(
            [
                str(_BIN / "dask"),
                "worker",
                self.address,
                "--name",
                name,
                "--host",
                "127.0.0.1",
                "--nthreads",
                str(nthreads),
                "--nworkers",
                "1",
                "--no-dashboard",
                "--no-nanny",
                "--local-directory",
                str(folder),
                *args,
            ],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=self._env(folder),
            start_new_session=True,
        )
        worker = DaskWorkerProcess(name, folder, process, log_path)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self.scheduler is not None and self.scheduler.poll() is None:
            os.killpg(self.scheduler.pid, signal.SIGKILL)
            self.scheduler.wait()

    @staticmethod
    def _env(folder: Path) -> dict[str, str]:
        drop = ("NBFLOWS_", "JPY_", "DASK_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        tmp = folder / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**env, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
