"""The container side of a docker pool's run: `python -m nbflows.workers.container_runner
RUN_DIR/spec.json` executes the run's notebook with papermill inside the container and writes
each output line and run event to stdout as one `RECORD_PREFIX` + JSON line, the executed
notebook and `result.json` to `RUN_DIR`.

It imports neither `docker` nor the worker's client: the container needs no path to the server.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["RECORD_PREFIX", "RUN_DIR", "run_in_container"]

#: Folder of the container that holds the run's files: notebook, spec, executed notebook, result.
RUN_DIR = "/nbflows-run"
#: Lines of the container's stdout starting with this carry one JSON record of the runner.
RECORD_PREFIX = "@nbflows "

#: Exit codes of `run_in_container`, by execution status.
EXIT_CODES = {"completed": 0, "failed": 1, "crashed": 70, "cancelled": 130}
SPEC_FILE = "spec.json"
NOTEBOOK_FILE = "flow.ipynb"
OUTPUT_NOTEBOOK_FILE = "output.ipynb"
RESULT_FILE = "result.json"
#: The run's output folder inside the container (`NBFLOWS_OUTPUT_DIR`): copied out after the
#: run with `get_archive`, so artifacts need no host mount.
OUTPUT_DIR = f"{RUN_DIR}/output"


# --------------------------------------------------------------------------------------------
# Inside the container


class _Emitter:
    """Writes the runner's records to stdout, one line each, from any thread."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, record: Mapping[str, Any]) -> None:
        text = RECORD_PREFIX + json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self._out.write(text)
            self._out.flush()


def run_in_container(
    spec_path: str, emit: Callable[[Mapping[str, Any]], None] | None = None
) -> int:
    """Execute the run described by `spec_path` (the worker put it there) and return the exit
    code (`EXIT_CODES`).

    Output lines and run events go to `emit` (default: stdout records for the worker); the
    executed notebook goes to `RUN_DIR/output.ipynb` and the outcome to `RUN_DIR/result.json`
    (`status`, `message` naming the failing or stopped cell, `oom`: a process was killed for
    memory). SIGTERM cancels: the kernel is interrupted and stopped, the notebook saved.
    """
    import nbformat

    from nbflows.execution.engine import execute

    send = emit or _Emitter(sys.stdout)
    folder = os.path.dirname(spec_path)
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: cancel.set())
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    notebook_path = spec.get("notebook") or os.environ.get("NBFLOWS_FLOW_NOTEBOOK")
    if not notebook_path or not os.path.isfile(notebook_path):
        return _write_result(
            folder,
            "failed",
            f"no notebook to run: {notebook_path or 'none given'} (neither the worker nor the "
            "image's NBFLOWS_FLOW_NOTEBOOK names an existing file)",
        )
    notebook = nbformat.read(notebook_path, as_version=4)

    def line(out: Any) -> None:
        send(
            {
                "k": "line",
                "time": out.time.isoformat(),
                "stream": out.stream,
                "text": out.text,
                "cell": out.cell_index,
            }
        )

    def event(data: Any, cell_index: int) -> None:
        send({"k": "event", "data": data, "cell": cell_index})

    result = execute(
        notebook,
        parameters=spec.get("parameters") or {},
        kernel_name=None,
        cwd=os.getcwd(),
        env={},
        timeout=spec.get("timeout"),
        on_output=line,
        on_event=event,
        kernel_pool=None,
        cancel_event=cancel,
    )
    _save_notebook(folder, result.notebook)
    oom = result.status == "crashed" and _out_of_memory()
    return _write_result(folder, result.status, result.message, oom=oom)


def _save_notebook(folder: str, notebook: Any) -> None:
    import nbformat

    temporary = os.path.join(folder, f".{OUTPUT_NOTEBOOK_FILE}.tmp")
    nbformat.write(notebook, temporary)
    os.replace(temporary, os.path.join(folder, OUTPUT_NOTEBOOK_FILE))


def _write_result(folder: str, status: str, message: str, **details: Any) -> int:
    with open(os.path.join(folder, RESULT_FILE), "w", encoding="utf-8") as fh:
        json.dump({"status": status, "message": message, **details}, fh)
    return EXIT_CODES[status]


def _out_of_memory() -> bool:
    """Whether the memory cgroup of this container has killed a process (cgroup v2, then v1)."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path, encoding="ascii") as fh:
                counts = dict(line.split(None, 1) for line in fh if line.strip())
        except (OSError, ValueError):
            continue
        return int(counts.get("oom_kill", "0").strip() or 0) > 0
    return False


def _main(argv: Iterable[str]) -> int:
    args = list(argv)
    if len(args) != 1:
        print(
            "usage: python -m nbflows.workers.container_runner RUN_DIR/spec.json", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_in_container(args[0])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
