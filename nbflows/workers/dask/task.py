"""What runs on a Dask worker for one attempt of a flow run: `run_attempt`.

The task is given everything by value (the frozen notebook, the run's spec, the project files as
a zip), never a path on the submitting machine. In order:

1. **Fence.** It tells the nbflows worker that it starts (an event with a token of its own) and
   waits for the worker's answer in the Dask `Variable` named by the spec. The worker grants the
   first execution of an attempt only: when Dask reschedules the task after its worker died, the
   new execution finds another token there and returns "refused" without running anything.
2. **Run.** The project files are unpacked into a fresh folder and the notebook executes there
   with papermill (`nbflows.execution.engine.execute`) in a kernel of this machine, headless (the flow
   run id in its environment), so `%%flow` cells report as events in the output stream.
3. **Relay.** Output lines and run events go back as Dask events (`Worker.log_event`) on the
   worker's topic, batched every `FLUSH_INTERVAL`; their order is kept.
4. **Cancel.** A thread waits on the run's Dask `Event`; when the worker sets it, the kernel is
   interrupted and killed, and the notebook as far as it ran comes back.

The result is a dict: `status` (as `ExecutionResult.status`, or "refused"), `message`,
`notebook` (nbformat JSON), `output_files` (what the run wrote under `NBFLOWS_OUTPUT_DIR`, a
zip; see `output_files`), `worker` (the Dask worker's address), `batches` (event batches sent).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import uuid
import zipfile
from typing import Any

__all__ = ["FLUSH_INTERVAL", "run_attempt", "unpack_project"]

#: Seconds between two batches of output lines sent back to the nbflows worker.
FLUSH_INTERVAL = 0.1
#: How often the cancel thread looks again whether the run is over.
CANCEL_POLL = 1.0


def run_attempt(spec: dict[str, Any], notebook: dict[str, Any], project: bytes | None) -> dict:
    """Execute one attempt on this Dask worker (see the module docstring)."""
    from distributed import Variable, get_worker

    worker = get_worker()
    outbox = _Outbox(worker, spec["topic"], spec["key"])
    token = uuid.uuid4().hex
    outbox.send({"kind": "start", "token": token, "worker": worker.address})
    try:
        granted = Variable(spec["grant"]).get(timeout=spec["grant_timeout"])
    except TimeoutError:
        granted = None
    if granted != token:
        return {"status": "refused", "worker": worker.address, "batches": outbox.batches}

    done = threading.Event()
    cancel = threading.Event()
    watcher = threading.Thread(
        target=_watch_cancel, args=(spec["cancel"], cancel, done), daemon=True
    )
    watcher.start()
    # Named after the attempt (its key): a folder a killed Dask worker left is told apart.
    folder = tempfile.mkdtemp(prefix=f"{spec['key']}-run-")
    try:
        result = _execute(spec, notebook, project, folder, outbox, cancel)
    finally:
        done.set()
        outbox.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {**result, "worker": worker.address, "batches": outbox.batches}


def _execute(
    spec: dict[str, Any],
    notebook: dict[str, Any],
    project: bytes | None,
    folder: str,
    outbox: _Outbox,
    cancel: threading.Event,
) -> dict[str, Any]:
    cwd = unpack_project(project, folder, spec.get("notebook_dir") or "")
    # Apart from the project: only what the run writes there becomes artifacts.
    output_dir = tempfile.mkdtemp(prefix=f"{spec['key']}-output-")
    try:
        return _execute_in(spec, notebook, cwd, output_dir, outbox, cancel)
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


def _execute_in(
    spec: dict[str, Any],
    notebook: dict[str, Any],
    cwd: str,
    output_dir: str,
    outbox: _Outbox,
    cancel: threading.Event,
) -> dict[str, Any]:
    import nbformat

    from nbflows.execution.engine import execute
    from nbflows.results.artifacts import OUTPUT_DIR_ENV

    from .output_files import pack_output_folder

    result = execute(
        nbformat.from_dict(notebook),
        parameters=spec.get("parameters") or {},
        kernel_name=spec.get("kernel_name"),
        cwd=cwd,
        env=spec.get("env") or {},
        timeout=spec.get("timeout"),
        on_output=lambda line: outbox.add(
            ["line", line.time.isoformat(), line.stream, line.text, line.cell_index]
        ),
        on_event=lambda data, cell: outbox.add(["event", data, cell], now=True),
        kernel_pool=None,
        cancel_event=cancel,
        run_env={**(spec.get("run_env") or {}), OUTPUT_DIR_ENV: output_dir},
    )
    return {
        "status": result.status,
        "message": result.message,
        "notebook": result.notebook,
        "output_files": pack_output_folder(output_dir),
    }


def unpack_project(project: bytes | None, folder: str, notebook_dir: str) -> str:
    """Unpack the project zip into `folder`; the folder the notebook runs in (`notebook_dir`
    inside it). Names that would leave `folder` are refused."""
    root = os.path.realpath(folder)
    if project:
        with zipfile.ZipFile(io.BytesIO(project)) as archive:
            for name in archive.namelist():
                target = os.path.realpath(os.path.join(root, name))
                if os.path.commonpath([root, target]) != root:
                    raise ValueError(f"the project archive holds a path outside it: {name!r}")
            archive.extractall(root)
    cwd = os.path.realpath(os.path.join(root, notebook_dir))
    if os.path.commonpath([root, cwd]) != root:
        raise ValueError(f"the notebook folder {notebook_dir!r} is outside the project")
    os.makedirs(cwd, exist_ok=True)
    return cwd


def _watch_cancel(name: str, cancel: threading.Event, done: threading.Event) -> None:
    from distributed import Event

    event = Event(name)
    while not done.is_set():
        try:
            if event.wait(timeout=CANCEL_POLL):
                cancel.set()
                return
        except Exception:  # the scheduler is away: the run goes on, cancel waits for it
            done.wait(CANCEL_POLL)


class _Outbox:
    """Items for the nbflows worker, sent in order as Dask events in batches."""

    def __init__(self, worker: Any, topic: str, key: str) -> None:
        self._worker = worker
        self._topic = topic
        self._key = key
        self._items: list[Any] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        #: Batches sent so far (the worker waits for all of them before it reports the end).
        self.batches = 0

    def send(self, item: dict[str, Any]) -> None:
        """Send one message at once (not batched)."""
        with self._lock:
            self._post([item])

    def add(self, item: list[Any], *, now: bool = False) -> None:
        with self._lock:
            self._items.append(item)
            if now:
                self._flush_locked()
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._flush_locked()

    def _loop(self) -> None:
        while not self._closed.wait(FLUSH_INTERVAL):
            with self._lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if self._items:
            items, self._items = self._items, []
            self._post([{"kind": "batch", "items": items}])

    def _post(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self._worker.log_event(self._topic, {"key": self._key, **message})
            self.batches += 1
