"""(7) Idle memory: what the extension adds to a Jupyter server (started on a new store, and
restarted on the store it made), and the whole idle system part by part (server, embedded
worker, kernel template, spare kernels) after one run, RSS and PSS (PSS splits the pages forked
kernels share with their template fairly)."""

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


def _pss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for pid {pid}")


def _tree(pid: int) -> list[int]:
    kids = _children(pid)
    return kids + [grandchild for kid in kids for grandchild in _tree(kid)]


def _part(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"worker" in argv and b"nbflows.cli.app" in argv:
        return "embedded worker"
    if len(argv) > 2 and argv[1] == b"-c" and b"kernel template" in argv[2]:
        # A forked kernel keeps its template's command line: tell them apart by the parent.
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return "spare kernels" if _part(parent) == "kernel template" else "kernel template"
    return "spare kernels"


def _parts(server_pid: int) -> dict[str, tuple[float, float, int]]:
    """part -> (RSS MiB, PSS MiB, processes), the server included."""
    parts: dict[str, tuple[float, float, int]] = {
        "server": (_rss_mib(server_pid), _pss_mib(server_pid), 1)
    }
    for pid in _tree(server_pid):
        try:
            rss, pss, name = _rss_mib(pid), _pss_mib(pid), _part(pid)
        except (OSError, RuntimeError):
            continue  # ended meanwhile
        old = parts.get(name, (0.0, 0.0, 0))
        parts[name] = (old[0] + rss, old[1] + pss, old[2] + 1)
    return parts


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
    with_ext, without, restarted = [], [], []
    system: list[dict[str, tuple[float, float, int]]] = []
    for i in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            without.append(_plain_server_rss(Path(tmp)))
            server = start_server(Path(tmp) / f"s{i}")
            try:
                time.sleep(3)
                with_ext.append(_rss_mib(server.process.pid))
                # One run, so that the worker has its template and a spare kernel, as when idle
                # between runs.
                client = server.client()
                client.create_work_pool("mem", "process")
                client.deploy(path="trivial.ipynb", name="mem", work_pool_name="mem")
                created = client.create_flow_run_from_deployment("trivial/mem")
                client.watch_flow_run(created["id"], timeout=300)
                time.sleep(5)
                system.append(_parts(server.process.pid))
            finally:
                server.stop()
            # The usual start: the same server again, on the store it made (no migration).
            server = start_server(Path(tmp) / f"s{i}")
            try:
                time.sleep(3)
                restarted.append(_rss_mib(server.process.pid))
            finally:
                server.stop()
    added = [a - b for a, b in zip(with_ext, without, strict=True)]
    names = sorted({name for parts in system for name in parts})

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    lines = []
    for name in names:
        rss = median([p.get(name, (0.0, 0.0, 0))[0] for p in system])
        pss = median([p.get(name, (0.0, 0.0, 0))[1] for p in system])
        count = max(p.get(name, (0.0, 0.0, 0))[2] for p in system)
        lines.append(f"{name} ({count}) RSS {rss:.0f} / PSS {pss:.0f}")
    total_pss = [sum(v[1] for v in parts.values()) for parts in system]
    total_rss = [sum(v[0] for v in parts.values()) for parts in system]
    return [
        Result(
            name="idle memory the extension adds to the server",
            unit="MiB",
            samples=added,
            target="small",
            reference="server RSS without nbflows",
            notes=(
                f"server RSS with nbflows {median(with_ext):.0f} MiB, "
                f"without {median(without):.0f} MiB"
            ),
        ),
        Result(
            name="idle memory the extension adds to the server, restarted on its store",
            unit="MiB",
            samples=[a - b for a, b in zip(restarted, without, strict=True)],
            target="small",
            reference="server RSS without nbflows",
            notes=f"server RSS {median(restarted):.0f} MiB",
        ),
        Result(
            name="idle memory of the whole system, PSS (server, worker, template, spare kernels)",
            unit="MiB",
            samples=total_pss,
            target="part by part",
            notes=f"MiB: {'; '.join(lines)}; RSS sum {median(total_rss):.0f} "
            "(counts the pages forked kernels share with their template once per process)",
        ),
    ]
