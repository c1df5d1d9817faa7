"""Run the benchmarks and print a table of medians and ratios to the references.

    python -m bench                  # everything but the long fault run (`outage`)
    python -m bench scheduler claims # some
    python -m bench --repeat 20

Results are also written as JSON to bench/results/ so that runs can be compared.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

from .harness import Result, print_table

BENCHMARKS = {
    "deployment_run": "bench.deployment_run",
    "burst": "bench.burst",
    "dispatch": "bench.dispatch",
    "flow_magic": "bench.flow_magic",
    "claims": "bench.claims",
    "scheduler": "bench.scheduler",
    "schedule_precision": "bench.schedule_precision",
    "list_runs": "bench.list_runs",
    "memory": "bench.memory",
    "lab_load": "bench.lab_load",
    "outage": "bench.outage",
    "dask_pool": "bench.dask_pool",
}


#: Run only when asked for by name (minutes long).
ON_REQUEST = {"outage", "dask_pool"}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "only", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)"
    )
    parser.add_argument(
        "--repeat", type=int, default=0, help="samples per benchmark (0: each one's default)"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results: list[Result] = []
    for name in args.only or [b for b in BENCHMARKS if b not in ON_REQUEST]:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"running {name} ...", flush=True)
        started = time.perf_counter()
        results.extend(module.run(args.repeat or None))
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    print_table(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count(),
                },
                "results": [r.to_json() for r in results],
            },
            indent=2,
        )
    )
    print(f"results written to {path}")


if __name__ == "__main__":
    main()
