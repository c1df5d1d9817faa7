"""A real Dask cluster for tests and benchmarks: `dask scheduler` and `dask worker` processes,
each worker in a working directory (and TMPDIR) of its own so that nothing passes between them or
from the test through the file system.

With `isolated=True` (root and `ip netns` needed, else it falls back and says why) each worker
also runs in a network namespace of its own, joined to the scheduler by a veth pair on a bridge:
the worker reaches the scheduler's address and nothing else of the machine's loopback.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .servers import free_port

__all__ = ["DaskCluster", "DaskWorkerProcess", "Namespaces"]

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


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespaces:
    """A bridge with an address of the machine, and network namespaces plugged into it."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000:05d}{random.randrange(100):02d}"
        self.tag = tag
        self.bridge = f"nbd{tag}"
        self.prefix = f"10.{random.randrange(100, 250)}.{random.randrange(256)}"
        self.host_ip = f"{self.prefix}.1"
        self.names: list[str] = []
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    @staticmethod
    def why_not() -> str | None:
        """Why namespaces cannot be made here (None when they can)."""
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "no `ip` command"
        name = f"nbdprobe{os.getpid() % 100000}"
        try:
            _ip("netns", "add", name)
            _ip("netns", "del", name)
        except (subprocess.CalledProcessError, OSError) as exc:
            return f"`ip netns add` failed: {exc}"
        return None

    def add(self) -> tuple[str, str]:
        """A new namespace (its name and address), with loopback and a veth into the bridge."""
        index = len(self.names)
        name = f"nbd{self.tag}w{index}"
        outside, inside = f"v{self.tag}h{index}", f"v{self.tag}n{index}"
        address = f"{self.prefix}.{index + 2}"
        _ip("netns", "add", name)
        self.names.append(name)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", name)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        for args in (
            ("addr", "add", f"{address}/24", "dev", inside),
            ("link", "set", inside, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("netns", "exec", name, "ip", *args)
        return name, address

    def close(self) -> None:
        for name in self.names:  # deleting a namespace deletes its end of the veth, and both
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)


@dataclass
class DaskCluster:
    """`dask scheduler` on a free loopback port and the workers added with `add_worker`."""

    folder: Path
    isolated: bool = False
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[DaskWorkerProcess] = field(default_factory=list)
    namespaces: Namespaces | None = None
    #: Why the workers share the machine's network though `isolated` was asked for.
    not_isolated: str | None = None

    @property
    def host(self) -> str:
        return self.namespaces.host_ip if self.namespaces else "127.0.0.1"

    @property
    def address(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> DaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.isolated:
            self.not_isolated = Namespaces.why_not()
            if self.not_isolated is None:
                self.namespaces = Namespaces()
        log = (self.folder / "scheduler.log").open("wb")
        self.scheduler = subprocess.Popen(
            [
                str(_BIN / "dask"),
                "scheduler",
                "--host",
                self.host,
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
        host, netns = "127.0.0.1", []
        if self.namespaces is not None:
            namespace, host = self.namespaces.add()
            netns = ["ip", "netns", "exec", namespace]  # execs the worker: its pid is the worker's
        process = subprocess.Popen(
            [
                *netns,
                str(_BIN / "dask"),
                "worker",
                self.address,
                "--name",
                name,
                "--host",
                host,
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
        if self.namespaces is not None:
            self.namespaces.close()

    @staticmethod
    def _env(folder: Path) -> dict[str, str]:
        drop = ("NBFLOWS_", "JPY_", "DASK_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        tmp = folder / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {**env, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
