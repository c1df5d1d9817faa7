"""Measurements, their statistics, and the table `python -m bench` prints."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """One benchmark: samples of what nbflows does, and of the reference where one is run here."""

    name: str
    unit: str  # "s", "ms", "/s", "MiB"
    samples: list[float]
    target: str
    reference: str = "—"
    reference_samples: list[float] = field(default_factory=list)
    reference_value: float | None = None  # a fixed figure from DESIGN.md when not run here
    higher_is_better: bool = False
    notes: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]

    @property
    def reference_median(self) -> float | None:
        if self.reference_samples:
            return statistics.median(self.reference_samples)
        return self.reference_value

    @property
    def ratio(self) -> float | None:
        """How many times better than the reference (>1 is better)."""
        ref = self.reference_median
        if ref is None or self.median == 0:
            return None
        return self.median / ref if self.higher_is_better else ref / self.median

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "median": self.median,
            "p90": self.p90,
            "reference_median": self.reference_median,
            "ratio": self.ratio,
        }


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.1f} {unit}"


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="nbflows benchmarks (medians over repeated runs after a warm-up)")
    for column in (
        "benchmark",
        "median",
        "p90",
        "n",
        "reference",
        "ref. median",
        "ratio",
        "target",
    ):
        table.add_column(
            column, justify="left" if column in ("benchmark", "reference", "target") else "right"
        )
    for r in results:
        ratio = r.ratio
        table.add_row(
            r.name,
            fmt(r.median, r.unit),
            fmt(r.p90, r.unit),
            str(len(r.samples)),
            r.reference,
            fmt(r.reference_median, r.unit),
            f"{ratio:.1f}x" if ratio is not None else "—",
            r.target,
        )
    Console(width=200).print(table)
    for r in results:
        if r.notes:
            print(f"- {r.name}: {r.notes}")
