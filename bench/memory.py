"""(7) Idle memory the extension adds to a Jupyter server (RSS, after start-up settles)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import free_port, start_server

from .harness import Result


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _plain_server_rss(tmp: Path) -> float:
    """A jupyter server with the same other extensions but nbflows disabled."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--ServerApp.root_dir={tmp}",
            "--IdentityProvider.token=t",
            "--ServerApp.jpserver_extensions={'nbflows.extension': False}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    httpx.get(
                        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": "token t"}
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(3)
        return _rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 3
    with_ext, without, worker = [], [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            without.append(_plain_server_rss(Path(tmp)))
            server = start_server(Path(tmp) / f"s{i}")
            try:
                time.sleep(3)
                with_ext.append(_rss_mib(server.process.pid))
                kids = _children(server.process.pid)
                worker.append(sum(_rss_mib(k) for k in kids))
            finally:
                server.stop()
    added = [a - b for a, b in zip(with_ext, without, strict=True)]
    return [
        Result(
            name="idle memory the extension adds to the server",
            unit="MiB",
            samples=added,
            target="small",
            reference="server RSS without nbflows",
            notes=(
                f"server RSS with nbflows {sorted(with_ext)[len(with_ext) // 2]:.0f} MiB, without "
                f"{sorted(without)[len(without) // 2]:.0f} MiB; the embedded worker process and its "
                f"spare kernel add {sorted(worker)[len(worker) // 2]:.0f} MiB of RSS on their own"
            ),
        )
    ]
