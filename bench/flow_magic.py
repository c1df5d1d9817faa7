"""(3) Interactive `%%flow` overhead over the same plain cell, in a real kernel reporting to a server."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from tests.servers import start_server

from .harness import Result

BODY = "total = sum(range(100))\nprint(total)"
PREFECT_FLOW_CALL = 1.1  # s, a Prefect 3.9 @flow call (DESIGN.md §6)


def _execute(kc: object, code: str) -> float:
    begin = time.perf_counter()
    reply = kc.execute_interactive(
        code, store_history=True, output_hook=lambda msg: None, timeout=60
    )  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - begin
    assert reply["content"]["status"] == "ok", reply["content"]
    return elapsed


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 200
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), embedded_worker=False)
        km, kc = start_new_kernel(
            kernel_name="python3",
            env={**os.environ, "NBFLOWS_API_URL": server.api, "NBFLOWS_API_TOKEN": server.token},
        )
        try:
            _execute(kc, "%load_ext nbflows")
            for _ in range(20):  # warm-up: imports, the client, the first run
                _execute(kc, BODY)
                _execute(kc, f"%%flow bench_flow\n{BODY}")
            plain, flow, overhead = [], [], []
            for _ in range(repeat):
                a = _execute(kc, BODY)
                b = _execute(kc, f"%%flow bench_flow\n{BODY}")
                plain.append(a)
                flow.append(b)
                overhead.append(b - a)
            time.sleep(1)
            recorded = server.client().list_flow_runs(flow_name="bench_flow", limit=1000)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            server.stop()
    completed = sum(1 for r in recorded if r["state"]["type"] == "COMPLETED")
    return [
        Result(
            name="%%flow cell, round trip in a kernel",
            unit="s",
            samples=flow,
            target="overhead ≤ 3 ms",
            reference="the same plain cell",
            reference_samples=plain,
            notes=f"{completed} runs recorded COMPLETED on the server",
        ),
        Result(
            name="%%flow overhead over the plain cell (paired)",
            unit="s",
            samples=overhead,
            target="≤ 3 ms",
            reference="Prefect 3.9 @flow call (1.1 s)",
            reference_value=PREFECT_FLOW_CALL,
        ),
    ]
