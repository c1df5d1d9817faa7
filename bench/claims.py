"""(4) Run claims per second, 8 concurrent workers on SQLite, through the REST API; double claims."""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from nbflows.client.rest import get_client
from tests.servers import start_server

from .harness import Result

RUNS = 4000
WORKERS = 8


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 3
    rates, doubles = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), embedded_worker=False)
        try:
            client = server.client()
            for round_ in range(repeat + 1):
                # A pool per round: the runs a round's workers hold stay out of the next round.
                pool = f"claims-{round_}"
                client.create_work_pool(pool, "process")
                client.deploy(path="trivial.ipynb", name=pool, work_pool_name=pool)
                for _ in range(RUNS):
                    client.create_flow_run_from_deployment(f"trivial/{pool}")
                got: list[list[str]] = [[] for _ in range(WORKERS)]
                barrier = threading.Barrier(WORKERS + 1)

                def worker(
                    i: int,
                    got: list[list[str]] = got,
                    barrier: threading.Barrier = barrier,
                    pool: str = pool,
                ) -> None:
                    own = get_client(url=server.api, token=server.token)
                    held: dict[str, int] = {}
                    beat_at = 0.0
                    barrier.wait()
                    while True:
                        # Beat like a real worker, listing what it holds: a worker that never
                        # beats has its claimed runs handed back after 15 s, and a slow round
                        # would then claim them again.
                        if time.monotonic() >= beat_at:
                            own.heartbeat(pool, f"w{i}", list(held), fences=held)
                            beat_at = time.monotonic() + 2
                        batch = own.claim(pool, f"w{i}", limit=10)
                        if not batch:
                            return
                        got[i].extend(c["flow_run"]["id"] for c in batch)
                        held.update((c["flow_run"]["id"], c["fence"]) for c in batch)

                threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
                for thread in threads:
                    thread.start()
                barrier.wait()
                begin = time.perf_counter()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - begin
                counts = Counter(run_id for ids in got for run_id in ids)
                assert len(counts) == RUNS, f"{len(counts)} of {RUNS} runs claimed"
                doubles += sum(1 for c in counts.values() if c > 1)
                if round_:
                    rates.append(RUNS / elapsed)
        finally:
            server.stop()
    return [
        Result(
            name="run claims, 8 concurrent workers, SQLite (REST API, batches of 10)",
            unit="/s",
            samples=rates,
            target="≥ 1,000/s, 0 double claims",
            higher_is_better=True,
            notes=f"double claims over all rounds: {doubles}",
        )
    ]
