"""The dashboard's run list as a user loads it: the Runs page (`/nbflows/runs/`, rendered by the
server; no API call of its own) opened in headless Chromium, timed from navigation to its
`load` event. Used by `list_runs` on the stores it fills (target at 10,000,000 runs on
PostgreSQL: ≤ 200 ms)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .harness import Result

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


def run_list(server: Any, count: int, repeat: int, where: str, target: str) -> list[Result]:
    """One row per view of the run list: the newest runs, and the Failed filter."""
    if not CHROMIUM.exists():
        print(f"  dashboard run list skipped: {CHROMIUM} is missing")
        return []
    from playwright.sync_api import sync_playwright

    views = {"newest": "nbflows/runs/", "Failed": "nbflows/runs/?state=FAILED"}
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_context().new_page()
            page.goto(f"{server.url}nbflows/?token={server.token}")  # logs in (a cookie)
            for label, path in views.items():
                samples, server_ms = [], []
                for i in range(repeat + 2):
                    begin = time.perf_counter()
                    page.goto(f"{server.url}{path}", wait_until="load")
                    elapsed = time.perf_counter() - begin
                    rows = page.locator("tr[data-run]").count()
                    assert rows >= 20, f"the run list showed {rows} rows"
                    if i >= 2:
                        samples.append(elapsed)
                        server_ms.append(
                            page.evaluate(
                                "() => { const n = performance.getEntriesByType('navigation')[0];"
                                " return n.responseStart - n.requestStart; }"
                            )
                        )
                server_ms.sort()
                results.append(
                    Result(
                        name=f"dashboard run list ({label}), {count:,} runs{where}",
                        unit="s",
                        samples=samples,
                        target=target,
                        notes=f"Chromium, navigation to load event; {rows} rows; the server "
                        f"answered in {server_ms[len(server_ms) // 2]:.0f} ms (median, request "
                        "to first byte)",
                    )
                )
        finally:
            browser.close()
    return results
