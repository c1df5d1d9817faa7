"""Forked kernels: IPython kernels forked from a pre-imported template process.

Starting an IPython kernel is mostly importing ipykernel and IPython (about a second on a busy
machine). A `KernelTemplate` is a process of the kernel's own Python that has done those imports
once (see `nbflows.execution.kernel_template`); every kernel is then a fork of it that applies its run's
working directory and environment before `IPKernelApp` starts. Each kernel is still a fresh
process with its own namespace, so nothing one run defines reaches the next.

`ForkProvisioner` plugs this into jupyter_client: a kernel manager whose provisioner it is
starts, signals, polls and kills a forked kernel exactly like a `Popen`ed one, so interrupting,
cancelling, timeouts and crash detection (with the exit status) work unchanged.

Kernel specs that are not ``<python> -m ipykernel_launcher ...`` (bash, R, anything else) keep
jupyter_client's normal start. On Linux a forked kernel dies with its template, and the template
with the worker, even when the worker is killed with SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

log = logging.getLogger(__name__)

__all__ = [
    "ForkProvisioner",
    "ForkedProcess",
    "KernelTemplate",
    "forkable",
    "read_at_process_start",
    "settable_in_kernel",
    "use_template",
]

#: How long a fork request may wait for the template (its imports included).
FORK_TIMEOUT = 60.0


def forkable(argv: Sequence[str]) -> str | None:
    """The Python executable of a kernel command ``<python> -m ipykernel_launcher ...``, else None."""
    if len(argv) < 3 or list(argv[1:3]) != ["-m", "ipykernel_launcher"]:
        return None
    exe = argv[0]
    # As jupyter_client's format_kernel_cmd: a bare "python" is the Python running this code.
    if exe in {
        "python",
        f"python{sys.version_info[0]}",
        "python{}.{}".format(*sys.version_info[:2]),
    }:
        return sys.executable
    if not os.path.isabs(exe):
        exe = shutil.which(exe) or ""
    return exe or None


#: Variables a process reads only when it starts (the dynamic loader, the interpreter, the C
#: locale): a forked kernel would keep the template's values, so a kernel whose environment
#: differs from the template's in one of them is started the usual way.
_START_TIME_PREFIXES = ("LD_", "DYLD_", "MALLOC_", "GLIBC_", "LC_", "PYTHON")
_START_TIME_NAMES = {"LANG", "LANGUAGE"}
#: Applied by the forked child on top of the template's interpreter (see kernel_template).
_APPLIED_AFTER_FORK = {"PYTHONPATH"}


def read_at_process_start(name: str) -> bool:
    """Whether `name` only takes effect when a process starts (fork cannot apply it)."""
    if name in _APPLIED_AFTER_FORK:
        return False
    return name in _START_TIME_NAMES or name.startswith(_START_TIME_PREFIXES)


def same_start_time_env(env: Mapping[str, str], base: Mapping[str, str]) -> bool:
    """Whether a process with `env` would start like one with `base` (see read_at_process_start)."""
    names = {n for n in (*env, *base) if read_at_process_start(n)}
    return all(env.get(n) == base.get(n) for n in names)


def settable_in_kernel(name: str) -> bool:
    """Whether a running Python kernel can take `name` in its `os.environ` with the same effect
    as having it from the start: not when the interpreter, the dynamic loader, the C library or
    the kernel's own start-up read it (PYTHONPATH, TZ, JUPYTER_*, ... included)."""
    return not (
        read_at_process_start(name)
        or name in {"PYTHONPATH", "TZ"}
        or name.startswith(("JUPYTER", "IPYTHON", "JPY_"))
    )


class ForkedProcess:
    """A forked kernel as `subprocess.Popen` looks to jupyter_client: pid, poll, wait, signals.

    The kernel is the template's child, not ours: its exit status arrives from the template.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, returncode: int) -> None:
        if self.returncode is None:
            self.returncode = returncode
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked kernel {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class KernelTemplate:
    """One template process for one Python executable; `fork` asks it for a kernel.

    Thread-safe. The template starts at once and imports in the background; a fork asked for
    meanwhile waits for it. `close` (or the end of this process) ends the template and its kernels.
    """

    def __init__(self, executable: str, max_forks: int = 0) -> None:
        self.executable = executable
        #: How many kernels this template may be claimed for (0: any number); see `claim`.
        self.max_forks = max_forks
        self._claimed = 0
        self._answered = 0
        self._started = time.monotonic()
        self._retired = False
        ours, theirs = socket.socketpair()
        source = (Path(__file__).parent / "kernel_template.py").read_text()
        from nbflows.execution.kernel_pool import TOKEN_VARIABLES

        # Like a kernel, the template never holds the worker's or Jupyter's credentials.
        env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
        self.env = env
        self.process = subprocess.Popen(
            [executable, "-c", source, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            cwd="/",
            env=env,
            # Out of the worker's process group: a Ctrl-C meant for the worker is not its business.
            start_new_session=True,
        )
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()
        self._next_id = 0
        self._waiting: dict[int, tuple[threading.Event, dict[str, Any]]] = {}
        self._kernels: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._closed = False
        self.ready = threading.Event()
        self._reader = threading.Thread(
            target=self._read, name=f"nbflows-kernel-template-{self.process.pid}", daemon=True
        )
        self._reader.start()

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def claim(self) -> bool:
        """Reserve one fork; False once `max_forks` were reserved (the template is used up).

        Forked kernels share the template's str hash seed (PYTHONHASHSEED is read when an
        interpreter starts, and every str hash cached in the template depends on it), and
        nothing else: each is a new process with its own namespace, and `random` (and numpy's
        global generator, if preloaded) reseed themselves after the fork. A template claimed
        once per kernel gives each kernel its own hash seed too.
        """
        with self._lock:
            if self._retired or (self.max_forks and self._claimed >= self.max_forks):
                return False
            self._claimed += 1
            return True

    @property
    def claimed(self) -> int:
        """How many forks were reserved so far."""
        return self._claimed

    @property
    def age(self) -> float:
        """Seconds since this template started."""
        return time.monotonic() - self._started

    @property
    def used_up(self) -> bool:
        return bool(self.max_forks) and self._claimed >= self.max_forks

    def retire(self) -> None:
        """Fork no more; the template ends by itself once the kernels it forked have ended."""
        with self._lock:
            self._retired = True
        self._end_if_idle()

    def _end_if_idle(self) -> None:
        with self._lock:
            idle = (
                self._retired
                and not self._closed
                and self._answered >= self._claimed
                and not self._kernels
                and not self._waiting
            )
        if idle:  # the template reads EOF and exits; its reader thread then reaps it
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def fork(self, argv: list[str], cwd: str, env: Mapping[str, str]) -> ForkedProcess:
        """A new kernel running ``ipykernel_launcher argv`` in `cwd` with exactly `env`.

        Raises FileNotFoundError if `cwd` does not exist, RuntimeError if the template is gone.
        """
        done = threading.Event()
        reply: dict[str, Any] = {}
        with self._lock:
            if not self.alive:
                raise RuntimeError("the kernel template process has exited")
            self._next_id += 1
            request_id = self._next_id
            self._waiting[request_id] = (done, reply)
            line = json.dumps({"id": request_id, "argv": argv, "cwd": cwd, "env": dict(env)})
            try:
                self._sock.sendall(line.encode() + b"\n")
            except OSError as exc:
                self._waiting.pop(request_id, None)
                raise RuntimeError(f"the kernel template process is gone: {exc}") from None
        if not done.wait(FORK_TIMEOUT):
            with self._lock:
                self._waiting.pop(request_id, None)
            raise RuntimeError(f"the kernel template did not fork within {FORK_TIMEOUT:g} s")
        if "error" in reply:
            if reply.get("errno") == 2:
                raise FileNotFoundError(2, reply["error"], cwd)
            raise RuntimeError(reply["error"])
        if "pid" not in reply:
            raise RuntimeError("the kernel template process exited")
        return self._kernels_get(reply["pid"])

    def _kernels_get(self, pid: int) -> ForkedProcess:
        with self._lock:
            process = self._kernels.get(pid)
            if process is None:
                process = self._kernels[pid] = ForkedProcess(pid)
                if pid in self._early_exits:
                    process._set_exit(self._early_exits.pop(pid))
                    self._kernels.pop(pid, None)
            return process

    def close(self) -> None:
        """End the template; it kills the kernels it forked that still run."""
        with self._lock:
            self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(10)
        self._sock.close()

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    break
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._handle(json.loads(line))
        except OSError:
            pass
        finally:
            self._gone()

    def _handle(self, message: dict[str, Any]) -> None:
        if "ready" in message:
            if message.get("threads", 1) != 1:
                log.warning("kernel template: %s threads before forking", message["threads"])
            self.ready.set()
        elif "exit" in message:
            pid, code = int(message["exit"]), int(message["returncode"])
            with self._lock:
                process = self._kernels.pop(pid, None)
                if process is None:  # exited before its fork reply was handled
                    self._early_exits[pid] = code
            if process is not None:
                process._set_exit(code)
            self._end_if_idle()
        elif "id" in message:
            with self._lock:
                self._answered += 1
                waiting = self._waiting.pop(int(message["id"]), None)
                if "pid" in message:
                    self._kernels.setdefault(message["pid"], ForkedProcess(message["pid"]))
            if waiting is not None:
                done, reply = waiting
                reply.update(message)
                done.set()
            if "pid" not in message:
                self._end_if_idle()

    def _gone(self) -> None:
        # The template is gone: so are its kernels (they die with it). Wake everyone waiting.
        with self._lock:
            self._closed = True
            waiting = list(self._waiting.values())
            self._waiting.clear()
            kernels = list(self._kernels.values())
            self._kernels.clear()
        for done, _ in waiting:
            done.set()
        for process in kernels:
            _kill_quietly(process.pid)
            process._set_exit(-signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


class ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, with the kernel forked from a `KernelTemplate`."""

    template: KernelTemplate | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        template = self.template
        env = dict(kwargs.get("env") or os.environ)
        if template is None or forkable(cmd) is None or not same_start_time_env(env, template.env):
            return await super().launch_kernel(cmd, **kwargs)
        import asyncio

        cwd = str(kwargs.get("cwd") or os.getcwd())
        loop = asyncio.get_running_loop()
        # Blocks only until the template answers (its imports, the first time).
        process = await loop.run_in_executor(None, template.fork, list(cmd[3:]), cwd, env)
        self.process = process  # type: ignore[assignment]  # a Popen look-alike
        self.pid = process.pid
        self.pgid = process.pid  # the kernel called setsid()
        self.cwd = cwd
        return self.connection_info


def use_template(km: Any, template: KernelTemplate) -> None:
    """Make kernel manager `km` (not started yet) fork its kernel from `template`."""
    import uuid

    km.kernel_id = km.kernel_id or str(uuid.uuid4())
    provisioner = ForkProvisioner(
        kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, provisioner_config={}, parent=km
    )
    provisioner.template = template
    km.provisioner = provisioner
