"""Pre-started, single-use Jupyter kernels for the worker.

Starting an IPython kernel costs about a second; a flow run should not pay it. `KernelPool` keeps
one spare kernel, already answering `kernel_info`, for every (kernel name, working directory,
environment) runs asked for recently (an environment of its own from its second run on), and
starts the next spare as soon as one is taken. Every
kernel runs exactly one notebook and is then killed, so nothing a run defines is visible to the next.

IPython kernels are forked from a template process of their Python that has imported ipykernel
once (`nbflows.execution.kernel_fork`): a spare, or a kernel for an environment no spare matches, then
costs a fork and the kernel app's set-up rather than a new interpreter and its imports.

All kernel lifecycle work (start, interrupt, kill) happens on one private asyncio loop in a daemon
thread: jupyter_client's `AsyncKernelManager` and its zmq sockets then live on one loop, while
`execute()` talks to the kernel through its own client on the caller's thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager

    from nbflows.execution.kernel_fork import KernelTemplate

log = logging.getLogger(__name__)


def fork_enabled() -> bool:
    """Forked kernels are on where `os.fork` exists, unless NBFLOWS_FORK_KERNELS=0."""
    return hasattr(os, "fork") and os.environ.get("NBFLOWS_FORK_KERNELS", "1") != "0"


#: A template forks at most this many kernels (they share its str hash seed) before a fresh one,
#: imported in the background meanwhile, replaces it: the template's imports (about 0.36 s of
#: CPU) are paid once per 16 runs of a burst instead of once per run.
DEFAULT_FORKS_PER_TEMPLATE = 16
#: ... and forks from it for at most this many seconds after it started: at a low rate of runs
#: nearly every run gets a fresh template (its own seed), and code upgraded in the environment
#: reaches the kernels within a run or two.
DEFAULT_TEMPLATE_MAX_AGE = 60.0


def forks_per_template_setting() -> int:
    """NBFLOWS_FORKS_PER_TEMPLATE: how many forked kernels may share one template, and so one
    str hash seed (default 16; 1: none share; 0: any number)."""
    value = os.environ.get("NBFLOWS_FORKS_PER_TEMPLATE", "").strip()
    if not value:
        return DEFAULT_FORKS_PER_TEMPLATE
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        log.warning(
            "NBFLOWS_FORKS_PER_TEMPLATE=%r is not a whole number ≥ 0; using %d",
            value,
            DEFAULT_FORKS_PER_TEMPLATE,
        )
        return DEFAULT_FORKS_PER_TEMPLATE
    return count


def template_max_age_setting() -> float:
    """NBFLOWS_TEMPLATE_MAX_AGE: seconds after which a template is replaced by a fresh one as
    soon as that one is ready (default 60; 0: no age limit)."""
    value = os.environ.get("NBFLOWS_TEMPLATE_MAX_AGE", "").strip()
    if not value:
        return DEFAULT_TEMPLATE_MAX_AGE
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        log.warning(
            "NBFLOWS_TEMPLATE_MAX_AGE=%r is not a number of seconds ≥ 0; using %g",
            value,
            DEFAULT_TEMPLATE_MAX_AGE,
        )
        return DEFAULT_TEMPLATE_MAX_AGE
    return seconds


T = TypeVar("T")

#: How many environments that missed once a pool remembers (see `KernelPool._keeps_spare`).
_MISSES_REMEMBERED = 64

#: Keep IPython's history out of ~/.ipython: concurrent kernels would fight over its SQLite lock.
_IPYKERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]


def _new_kernel_manager(kernel_name: str) -> AsyncKernelManager:
    from jupyter_client.manager import AsyncKernelManager

    if os.name == "nt":
        return AsyncKernelManager(kernel_name=kernel_name)
    # Unix sockets rather than TCP: no port races between concurrent starts, no traffic on the
    # network stack, and ipykernel does not warn about unencrypted TCP. The socket paths must
    # be absolute (the kernel runs in the run's cwd) and short (sun_path is ~107 bytes).
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, mode=0o700, exist_ok=True)
    name = f"nbflows-{uuid.uuid4().hex[:12]}"
    sockets = _socket_dir(runtime)
    if sockets is None:  # no short enough private folder: TCP on loopback after all
        return AsyncKernelManager(
            kernel_name=kernel_name, connection_file=os.path.join(runtime, f"{name}.json")
        )
    return AsyncKernelManager(
        kernel_name=kernel_name,
        transport="ipc",
        ip=os.path.join(sockets, f"{name}-ipc"),
        connection_file=os.path.join(runtime, f"{name}.json"),
    )


#: `<dir>/nbflows-<12 hex>-ipc-<port>` must fit in sun_path (107 bytes on Linux).
_SOCKET_NAME_ROOM = len("/nbflows-0123456789ab-ipc-99999")
_SUN_PATH_MAX = 107


def _socket_dir(runtime: str) -> str | None:
    """A private folder for kernel sockets whose paths fit in a Unix socket address.

    The Jupyter runtime dir when its path is short enough; otherwise a folder of this process
    under the system temp dir (deep runtime dirs are common: tests, containers, home dirs).
    """
    if len(runtime) + _SOCKET_NAME_ROOM <= _SUN_PATH_MAX:
        return runtime
    return _private_socket_dir()


@functools.lru_cache(maxsize=1)
def _private_socket_dir() -> str | None:
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="nbflows-k")  # mode 0700
    if len(folder) + _SOCKET_NAME_ROOM > _SUN_PATH_MAX:
        os.rmdir(folder)
        return None
    atexit.register(shutil.rmtree, folder, True)
    return folder


def new_client(km: AsyncKernelManager) -> Any:
    """A started `AsyncKernelClient` for `km`, with its own session id.

    `km.client()` clones the manager's Session, id *and* message counter included, so two
    clients of one kernel number their requests alike: a late IOPub message answering this
    pool's readiness check would then look like a reply to the run's first cell. No heartbeat
    channel (its thread is not needed: liveness is read from the process), no stdin.
    """
    kc = km.client()
    kc.session.session = str(uuid.uuid4())
    kc.start_channels(hb=False, stdin=False, control=False)
    return kc


async def wait_until_ready(kc: Any, km: AsyncKernelManager, timeout: float) -> dict[str, Any]:
    """Wait until the kernel answers `kernel_info` *and* this client receives its IOPub messages.

    jupyter_client's `wait_for_ready` waits 0.2 s for IOPub after each reply, which is most of
    a warm run's time; here each round waits only briefly and simply asks again. A message seen
    on IOPub proves the subscription is live, so no output of the first cell can be missed.
    Returns the `kernel_info_reply`.
    """
    from queue import Empty

    deadline = time.monotonic() + timeout
    iopub_wait = 0.002
    while True:
        msg_id = kc.kernel_info()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"the kernel did not answer within {timeout:g} s")
            try:
                reply = await kc.get_shell_msg(timeout=min(remaining, 0.5))
            except Empty:
                if not await km.is_alive():
                    raise RuntimeError("the kernel died before it was ready") from None
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        try:
            await kc.get_iopub_msg(timeout=iopub_wait)
        except Empty:
            iopub_wait = min(iopub_wait * 2, 0.2)
            continue
        kc._handle_kernel_info_reply(reply)
        return reply


async def wait_for_sockets(km: AsyncKernelManager, timeout: float) -> None:
    """Wait until a kernel on Unix sockets has bound its shell and IOPub sockets.

    A client that connects before the kernel has bound them finds no socket file and zmq
    retries only after its reconnect interval (100 ms, growing): most of a fresh kernel's
    start-up. The files appear in a few tens of ms; a client that connects then is answered at
    once. Returns at once for TCP (a connection there is retried by zmq as before).
    """
    if km.transport != "ipc":
        return
    paths = [f"{km.ip}-{km.shell_port}", f"{km.ip}-{km.iopub_port}"]
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not all(os.path.exists(path) for path in paths):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the kernel did not open its sockets within {timeout:g} s")
        if not await km.is_alive():
            raise RuntimeError("the kernel died before it was ready")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.02)


def _is_python(km: AsyncKernelManager) -> bool:
    spec = km.kernel_spec
    return spec is not None and str(spec.language).lower() == "python"


class AcquireCancelled(Exception):
    """`KernelPool.acquire` gave up because its `cancel_event` was set."""


#: Credentials of the worker and of Jupyter that a run's kernel never inherits: a run gets its
#: own credential (`NBFLOWS_API_TOKEN`, set per run) and nothing more.
TOKEN_VARIABLES = frozenset(
    {
        "NBFLOWS_API_TOKEN",
        "NBFLOWS_WORKER_TOKEN",
        "JUPYTER_TOKEN",
        "JPY_API_TOKEN",
        "JUPYTERHUB_API_TOKEN",
    }
)


@dataclass(frozen=True)
class KernelKey:
    """What a spare must match to be handed out: kernel spec, working directory, environment."""

    kernel_name: str
    cwd: str
    env_hash: str

    @classmethod
    def of(cls, kernel_name: str, cwd: str, env: Mapping[str, str]) -> KernelKey:
        digest = hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()
        return cls(kernel_name, os.path.realpath(cwd), digest[:16])


class KernelPool:
    """One warm spare kernel per (kernel_name, cwd, env); each kernel is used for one run only.

    Thread-safe: any number of threads may `acquire` and `release` concurrently.

    `max_spares` bounds how many keys keep a spare (least recently used keys lose theirs first);
    `max_spares=0` disables spares, so every `acquire` starts a fresh kernel. `startup_timeout`
    is how long a kernel may take to answer its first `kernel_info` request. `fork` (default:
    on where os.fork exists, unless NBFLOWS_FORK_KERNELS=0) forks IPython kernels from a
    pre-imported template process instead of starting an interpreter for each; at most
    `forks_per_template` kernels share one template, and so its hash seed (default
    NBFLOWS_FORKS_PER_TEMPLATE, else 16; 1: each kernel its own; 0: any number), and a template
    older than `template_max_age` seconds is replaced once a fresh one is ready (default
    NBFLOWS_TEMPLATE_MAX_AGE, else 60; 0: never).
    """

    def __init__(
        self,
        *,
        max_spares: int = 4,
        startup_timeout: float = 60.0,
        fork: bool | None = None,
        forks_per_template: int | None = None,
        template_max_age: float | None = None,
    ) -> None:
        if max_spares < 0:
            raise ValueError(f"max_spares must be 0 or more, not {max_spares}")
        self.max_spares = max_spares
        self.startup_timeout = startup_timeout
        # Reentrant: a done-callback may run at once, in the thread that holds the lock.
        self._lock = threading.RLock()
        self._spares: OrderedDict[KernelKey, concurrent.futures.Future[AsyncKernelManager]] = (
            OrderedDict()
        )
        self._in_use: set[AsyncKernelManager] = set()
        self._disposals: set[concurrent.futures.Future[None]] = set()
        self._starts: set[concurrent.futures.Future[AsyncKernelManager]] = set()
        self._env: dict[KernelKey, dict[str, str]] = {}
        self._missed: OrderedDict[KernelKey, None] = OrderedDict()  # see _keeps_spare
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False  # no new kernels
        self._stopped = False  # the loop takes no more work
        # Python kernels are forked from a pre-imported template (see nbflows.execution.kernel_fork).
        self._fork = fork_enabled() if fork is None else fork
        self._templates: dict[str, KernelTemplate] = {}
        self._next_templates: dict[str, KernelTemplate] = {}  # imported, not forked from yet
        self._retired: list[KernelTemplate] = []  # used up; end when their kernels have
        self.forks_per_template = (
            forks_per_template_setting() if forks_per_template is None else forks_per_template
        )
        self.template_max_age = (
            template_max_age_setting() if template_max_age is None else template_max_age
        )

    # -- public API ---------------------------------------------------------------------------

    def acquire(
        self,
        kernel_name: str,
        cwd: str,
        env: Mapping[str, str],
        *,
        cancel_event: threading.Event | None = None,
        launch_env: Mapping[str, str] | None = None,
    ) -> AsyncKernelManager:
        """A started kernel, ready for requests, running in `cwd` with `env` added to its
        environment (on top of this process's). The caller owns it: give it back with `release`
        (or `kill`) when the run is over; it is never handed out twice.

        Returns the warm spare when one matches (and starts its replacement), else starts one.
        `launch_env` adds variables of this kernel alone (e.g. a run's id, for a kernel that
        cannot take them once started): it is started for the call, and no spare is kept for them.
        Raises `jupyter_client.kernelspec.NoSuchKernel` for an unknown kernel name, `RuntimeError`
        if the kernel does not start, `AcquireCancelled` if `cancel_event` is set meanwhile.
        """
        key = KernelKey.of(kernel_name, cwd, env)
        own_env = dict(launch_env or {})
        with self._lock:
            self._check_open()
            self._env[key] = dict(env)
            spare = None if own_env else self._spares.pop(key, None)
            if own_env:
                log.debug("kernel pool: starting a kernel of its own for %s", key)
                own = self._start_kernel(key, launch_env=own_env, spare=False)
            elif spare is not None:
                log.debug("kernel pool: warm hit for %s", key)
                own = spare
                self._add_spare(key, self._start_kernel(key))
            else:
                log.debug("kernel pool: miss for %s, starting a kernel", key)
                own = self._start_kernel(key, spare=False)
                if self.max_spares and self._keeps_spare(key, env):
                    # Start the spare only once ours is up: two kernels starting at once on a
                    # small machine would delay the run that is waiting.
                    self._add_spare(key, self._start_kernel(key, after=own))
        km = self._wait(own, cancel_event)
        if not self._alive_now(km):
            # A spare that died while idle (OOM killer, someone's kill): start a fresh one.
            log.warning("kernel pool: spare kernel for %s had died; starting another", key)
            with self._lock:
                self._starts.discard(own)
                self._dispose(km)
                self._check_open()
                own = self._start_kernel(key, launch_env=own_env, spare=False)
            km = self._wait(own, cancel_event)
        with self._lock:
            # Tracked as "starting" until here, so that shutdown() kills it in any case.
            if not self._closed:
                self._starts.discard(own)
                self._in_use.add(km)
                return km
        raise RuntimeError("this KernelPool has been shut down")

    def prewarm(self, kernel_name: str, cwd: str, env: Mapping[str, str]) -> None:
        """Start a spare for this key now (if it has none), so the first run is warm too."""
        if not self.max_spares:
            return
        key = KernelKey.of(kernel_name, cwd, env)
        with self._lock:
            self._check_open()
            self._env[key] = dict(env)
            if key in self._spares:
                self._spares.move_to_end(key)
            else:
                self._add_spare(key, self._start_kernel(key))

    def spare_ready(self, kernel_name: str, cwd: str, env: Mapping[str, str]) -> bool:
        """Whether a started, ready spare is waiting for this key."""
        key = KernelKey.of(kernel_name, cwd, env)
        with self._lock:
            fut = self._spares.get(key)
        return fut is not None and fut.done() and fut.exception() is None

    def wait_spare(
        self, kernel_name: str, cwd: str, env: Mapping[str, str], timeout: float | None = None
    ) -> bool:
        """Block until the spare for this key is ready; False if there is none or it failed."""
        key = KernelKey.of(kernel_name, cwd, env)
        with self._lock:
            fut = self._spares.get(key)
        if fut is None:
            return False
        try:
            fut.result(timeout)
        except Exception:
            return False
        return True

    def release(self, km: AsyncKernelManager) -> None:
        """Kill a kernel that has finished its run, in the background (returns at once)."""
        with self._lock:
            if km not in self._in_use:
                return  # killed already (by `kill`, or by shutdown)
            self._in_use.discard(km)
        self._dispose(km)

    def kill(self, km: AsyncKernelManager) -> None:
        """Kill a kernel and its process group now; returns once the process is gone."""
        with self._lock:
            self._in_use.discard(km)
        fut = self._submit_live(self._kill(km))
        if fut is not None:
            fut.result(timeout=30)

    async def async_kill(self, km: AsyncKernelManager) -> None:
        """`kill` for callers inside an event loop (any loop, any thread)."""
        with self._lock:
            self._in_use.discard(km)
        fut = self._submit_live(self._kill(km))
        if fut is not None:
            await asyncio.wrap_future(fut)

    async def async_interrupt(self, km: AsyncKernelManager) -> None:
        """Interrupt what the kernel is executing (SIGINT to its process group for ipykernel)."""
        fut = self._submit_live(self._interrupt(km))
        if fut is not None:
            await asyncio.wrap_future(fut)

    def shutdown(self) -> None:
        """Kill every spare and every kernel still handed out, then stop the pool's thread.

        A run still executing in a killed kernel ends as crashed. Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Every kernel this pool started and did not kill yet is a spare, is in use, or is
            # still starting (maybe for an acquire() that is waiting): kill them all.
            starts = {*self._starts, *self._spares.values()}
            self._spares.clear()
            in_use = set(self._in_use)
            self._in_use.clear()
            loop, thread = self._loop, self._thread
        atexit.unregister(self.shutdown)
        if loop is None or thread is None:
            return
        concurrent.futures.wait(starts, timeout=self.startup_timeout)
        kms = {f.result() for f in starts if f.done() and not f.cancelled() and not f.exception()}
        kills = [asyncio.run_coroutine_threadsafe(self._kill(km), loop) for km in kms | in_use]
        concurrent.futures.wait(kills, timeout=30)
        with self._lock:
            disposals = list(self._disposals)
        concurrent.futures.wait(disposals, timeout=30)
        for template in [*self._templates.values(), *self._next_templates.values(), *self._retired]:
            template.close()
        with self._lock:
            self._stopped = True  # from here on nothing is submitted to the loop
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this KernelPool has been shut down")

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        # Called with self._lock held.
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="nbflows-kernel-pool", daemon=True)
            thread.start()
            ready.wait()
            self._loop, self._thread = loop, thread
            atexit.register(self.shutdown)
        return self._loop

    def _start_kernel(
        self,
        key: KernelKey,
        after: concurrent.futures.Future[Any] | None = None,
        launch_env: Mapping[str, str] | None = None,
        spare: bool = True,
    ) -> concurrent.futures.Future[AsyncKernelManager]:
        # Called with self._lock held.
        fut = self._submit(self._start(key, after, launch_env, warm_up=spare))
        self._starts.add(fut)
        fut.add_done_callback(self._start_done)
        return fut

    def _start_done(self, fut: concurrent.futures.Future[AsyncKernelManager]) -> None:
        # A kernel that started stays in _starts until acquire() hands it out or it is disposed.
        if fut.cancelled() or fut.exception() is not None:
            with self._lock:
                self._starts.discard(fut)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    def _submit_live(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T] | None:
        """Submit unless the loop has stopped (then the kernels are dead already)."""
        with self._lock:
            if self._stopped or self._loop is None:
                coro.close()
                return None
            return self._submit(coro)

    def _keeps_spare(self, key: KernelKey, env: Mapping[str, str]) -> bool:
        """Whether a miss for `key` starts a spare: always for the plain environment, else
        from the second miss in a short while. A run whose `env` differs every time (a
        per-run JUPYTER_* or LD_* variable) then does not start a kernel that nobody takes,
        and which would compete with the run for the CPU."""
        # Called with self._lock held.
        if not env or key in self._missed:
            return True
        self._missed[key] = None
        while len(self._missed) > _MISSES_REMEMBERED:
            self._missed.popitem(last=False)
        return False

    def _add_spare(
        self, key: KernelKey, fut: concurrent.futures.Future[AsyncKernelManager]
    ) -> None:
        # Called with self._lock held.
        self._spares[key] = fut
        while len(self._spares) > self.max_spares:
            old_key, old = self._spares.popitem(last=False)
            log.debug(
                "kernel pool: dropping the spare for %s (max_spares=%d)", old_key, self.max_spares
            )
            # Not old.add_done_callback: on a finished future it would run right here.
            self._starts.discard(old)
            evicted = self._submit(self._kill_when_started(old))
            self._disposals.add(evicted)
            evicted.add_done_callback(self._disposal_done)

    async def _kill_when_started(self, fut: concurrent.futures.Future[AsyncKernelManager]) -> None:
        try:
            km = await asyncio.wrap_future(fut)
        except Exception:
            return
        await self._kill(km)

    def _dispose_when_started(self, fut: concurrent.futures.Future[AsyncKernelManager]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        with self._lock:
            self._starts.discard(fut)
            self._dispose(fut.result())

    def _dispose(self, km: AsyncKernelManager) -> None:
        with self._lock:
            fut = self._submit_live(self._kill(km))
            if fut is None:
                return
            self._disposals.add(fut)
        fut.add_done_callback(self._disposal_done)

    def _disposal_done(self, fut: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._disposals.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("kernel pool: could not kill a kernel: %s", fut.exception())

    def _wait(
        self,
        fut: concurrent.futures.Future[AsyncKernelManager],
        cancel_event: threading.Event | None,
    ) -> AsyncKernelManager:
        deadline = time.monotonic() + self.startup_timeout + 5
        while True:
            try:
                return fut.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if self._stopped:
                    raise RuntimeError("this KernelPool has been shut down") from None
                if cancel_event is not None and cancel_event.is_set():
                    fut.add_done_callback(self._dispose_when_started)
                    raise AcquireCancelled("cancelled while waiting for a kernel") from None
                if time.monotonic() > deadline:  # _start has its own timeout; belt and braces
                    fut.add_done_callback(self._dispose_when_started)
                    raise RuntimeError("the kernel did not start in time") from None

    async def _start(
        self,
        key: KernelKey,
        after: concurrent.futures.Future[Any] | None = None,
        launch_env: Mapping[str, str] | None = None,
        warm_up: bool = True,
    ) -> AsyncKernelManager:
        if after is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(after)
        km = _new_kernel_manager(key.kernel_name)
        if self._fork:
            self._fork_from_template(km)
        inherited = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
        env = {**inherited, **self._env.get(key, {}), **(launch_env or {})}
        extra = list(_IPYKERNEL_ARGS) if km.ipykernel else []
        await km.start_kernel(cwd=key.cwd, env=env, extra_arguments=extra)
        try:
            await wait_for_sockets(km, self.startup_timeout)
        except BaseException:
            await self._kill(km)
            raise
        kc = new_client(km)
        try:
            await wait_until_ready(kc, km, self.startup_timeout)
            if warm_up and _is_python(km):
                # The first execution in a new IPython kernel is several times slower than later
                # ones (lazy set-up); a spare pays that before it is asked for (a kernel that a
                # run waits for would only add a round trip). Silent: no history, no count, no
                # output.
                await kc.execute(
                    "pass",
                    silent=True,
                    store_history=False,
                    reply=True,
                    timeout=self.startup_timeout,
                )
        except BaseException:
            kc.stop_channels()
            await self._kill(km)
            raise
        kc.stop_channels()
        return km

    def _fork_from_template(self, km: AsyncKernelManager) -> None:
        """Have `km` fork its kernel from the template of its Python, if it is an ipykernel.

        A template forks at most `forks_per_template` kernels (see `KernelTemplate.claim`); its
        successor starts importing once half of those are claimed (or the template is past its
        age), so that it is ready by the time it is needed. A template past `template_max_age`
        still forks until its successor is ready: a run never waits for a template's imports
        because of the age limit.
        """
        from nbflows.execution.kernel_fork import forkable, use_template

        executable = forkable(km.kernel_spec.argv) if km.kernel_spec is not None else None
        if executable is None:
            return  # bash, R, ...: started the usual way
        with self._lock:
            if self._closed:
                return
            template = self._templates.get(executable)
            successor = self._next_templates.get(executable)
            if template is not None and not template.alive and not template.used_up:
                log.warning("kernel pool: the kernel template for %s had exited", executable)
            old_enough = (
                template is not None
                and self._expired(template)
                and successor is not None
                and successor.alive
                and successor.ready.is_set()
            )
            if template is None or old_enough or not template.alive or not template.claim():
                if template is not None:
                    template.retire()
                    self._retired.append(template)
                template = self._next_templates.pop(executable, None)
                if template is None or not template.alive:
                    template = self._new_template(executable)
                self._templates[executable] = template
                template.claim()
            if executable not in self._next_templates and (
                self._half_used(template) or self._expired(template)
            ):
                self._next_templates[executable] = self._new_template(executable)
            self._retired = [old for old in self._retired if old.alive]
        use_template(km, template)

    def _half_used(self, template: KernelTemplate) -> bool:
        return bool(template.max_forks) and 2 * template.claimed >= template.max_forks

    def _expired(self, template: KernelTemplate) -> bool:
        return bool(self.template_max_age) and template.age >= self.template_max_age

    def _new_template(self, executable: str) -> KernelTemplate:
        from nbflows.execution.kernel_fork import KernelTemplate

        return KernelTemplate(executable, max_forks=self.forks_per_template)

    def _alive_now(self, km: AsyncKernelManager) -> bool:
        from nbflows.execution.kernel_fork import ForkedProcess

        process = getattr(km.provisioner, "process", None)
        if isinstance(
            process, (subprocess.Popen, ForkedProcess)
        ):  # the local provisioner: no loop round trip
            return process.poll() is None
        fut = self._submit_live(self._is_alive(km))
        return fut is not None and fut.result(timeout=30)

    @staticmethod
    async def _is_alive(km: AsyncKernelManager) -> bool:
        return bool(await km.is_alive())

    @staticmethod
    async def _interrupt(km: AsyncKernelManager) -> None:
        if await km.is_alive():
            await km.interrupt_kernel()

    @staticmethod
    async def _kill(km: AsyncKernelManager) -> None:
        # Runs on the pool's loop only. Several callers may kill the same kernel (the watchdog,
        # the end of the run, shutdown): all of them wait for the one kill, which runs once.
        task: asyncio.Future[None] | None = getattr(km, "_nbflows_kill", None)
        if task is None:
            task = asyncio.ensure_future(KernelPool._do_kill(km))
            km._nbflows_kill = task  # type: ignore[attr-defined]
        await asyncio.shield(task)

    @staticmethod
    async def _do_kill(km: AsyncKernelManager) -> None:
        if km.has_kernel:
            # SIGKILL to the kernel's process group (its subprocesses too), then reap it.
            await km.shutdown_kernel(now=True)
        else:
            await km.cleanup_resources()
