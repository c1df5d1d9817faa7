"""(8) What nbflows' JupyterLab front end adds to the Lab's page load, in headless Chromium.

Three JupyterLab servers started as the tests start them (`python -m jupyterlab` with the nbflows
server extension, the labextension as the package installs it), alike but for the labextension:
- enabled: as installed;
- disabled: `{"disabledExtensions": {"nbflows": true}}` in a `labconfig/page_config.json` of a
  config dir of its own (`JUPYTER_CONFIG_PATH`; what `jupyter labextension disable nbflows`
  writes). JupyterLab 4 still fetches and evaluates a disabled extension's modules and styles,
  it only does not activate its plugins;
- absent: `LabApp.labextensions_path` is a folder linking every installed labextension but
  nbflows', as if it were not installed. The reference: what the front end adds is enabled
  minus absent.

A load is timed in the page, from the navigation's start (`performance.now()`) to the ready
point: `jupyterapp.restored` resolved (every plugin activated, nbflows' included, and the
layout restored), the launcher and the file browser's listing rendered, then the next frame.
Each round loads the Lab once per server in a fresh browser context (cold HTTP cache), then
once more in that context (warm cache); the servers' order rotates every round.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_path

from tests.servers import Server, start_server

from .harness import Result

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
CHROMIUM_ARGS += ["--disable-background-networking", "--disable-component-update"]
MODES = ("enabled", "disabled", "absent")
TARGET_MS = 100.0
#: The extension's package name in JupyterLab (its plugins' ids start with it).
EXTENSION = "nbflows"

# Marks the ready point in the page: set before any of the page's scripts runs.
READY_SCRIPT = """
(() => {
  const ready = () => {
    if (document.querySelector('.jp-Launcher') && document.querySelector('.jp-DirListing-item')) {
      requestAnimationFrame(() => { window.__labReady = performance.now(); });
    } else {
      setTimeout(ready, 5);
    }
  };
  const app = () => {
    if (window.jupyterapp) {
      window.jupyterapp.restored.then(ready);
    } else {
      setTimeout(app, 5);
    }
  };
  app();
})();
"""

# What the page fetched up to the ready point (nbflows' share), and whether its plugin is active.
REPORT_SCRIPT = """
(ext) => {
  const entries = performance.getEntriesByType('resource')
    .filter(e => e.startTime <= window.__labReady);
  const own = entries.filter(e => e.name.includes(`/lab/extensions/${ext}/`));
  const api = entries.filter(e => e.name.includes(`/${ext}/api/`));
  const app = window.jupyterapp;
  return {
    ready: window.__labReady,
    requests: entries.length,
    ownRequests: own.length,
    ownBytes: own.reduce((n, e) => n + (e.encodedBodySize || 0), 0),
    ownFiles: own.map(e => e.name.split('/').pop().split('?')[0]),
    apiRequests: api.map(e => e.name.split(`/${ext}/api/`)[1]),
    activated: app.isPluginActivated(`${ext}:plugin`)
  };
}
"""


@dataclass
class Loads:
    """One server's samples (ms) and what its loads fetched."""

    cold: list[float] = field(default_factory=list)
    warm: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the page's main-thread CPU ms, cold loads
    report: dict[str, Any] = field(default_factory=dict)


def _without_nbflows(folder: Path) -> Path:
    """A labextensions folder with links to every installed labextension but nbflows'."""
    folder.mkdir(parents=True)
    for root in map(Path, jupyter_path("labextensions")):
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            packages = list(entry.iterdir()) if entry.name.startswith("@") else [entry]
            for package in packages:
                name = package.relative_to(root)
                if str(name) == EXTENSION or not (package / "package.json").exists():
                    continue
                link = folder / name
                if not link.exists():  # the first path in jupyter_path wins, as for JupyterLab
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(package.resolve())
    return folder


def _start(tmp: Path, mode: str) -> Server:
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    args = [
        f"--LabApp.user_settings_dir={tmp / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp / 'lab-workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.expose_app_in_browser=True",
    ]
    env: dict[str, str] = {}
    if mode == "disabled":
        labconfig = tmp / "config" / "labconfig"
        labconfig.mkdir(parents=True)
        (labconfig / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {EXTENSION: True}})
        )
        env["JUPYTER_CONFIG_PATH"] = str(tmp / "config")
    if mode == "absent":
        # One list item per option (a list literal would be one item).
        args.append(f"--LabApp.labextensions_path={_without_nbflows(tmp / 'labextensions')}")
    return start_server(tmp, module="jupyterlab", extra_args=args, env=env)


def _load(context: Any, url: str) -> tuple[float, float, dict[str, Any]]:
    """Load the Lab in a tab of `context`: (ms to the ready point, main-thread CPU ms, report).
    The CPU time depends less on the machine's load than the wall time does."""
    page = context.new_page()
    try:
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.goto(url, wait_until="commit")
        page.wait_for_function("() => window.__labReady !== undefined", polling=50)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        report = page.evaluate(REPORT_SCRIPT, EXTENSION)
        return float(report["ready"]), metrics["ThreadTime"] * 1000, report
    finally:
        page.close()


def _check(mode: str, report: dict[str, Any]) -> None:
    """The ready point includes nbflows' activation, and each mode is what it says: its files
    are fetched unless absent, its plugin is active only when enabled."""
    expected = {"enabled": (True, True), "disabled": (True, False), "absent": (False, False)}
    got = (report["ownRequests"] > 0, report["activated"])
    if got != expected[mode]:
        raise RuntimeError(f"{mode}: nbflows' files fetched, plugin activated: {got}")


def run(repeat: int | None = None) -> list[Result]:
    repeat = repeat or 12
    if not CHROMIUM.exists():
        print(f"  lab_load skipped: {CHROMIUM} is missing")
        return []
    from playwright.sync_api import sync_playwright

    loads = {mode: Loads() for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp_dir:
        servers: dict[str, Server] = {}
        try:
            for mode in MODES:
                servers[mode] = _start(Path(tmp_dir) / mode, mode)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                try:
                    for i in range(repeat + 1):  # the first round warms the servers up
                        order = MODES[i % 3 :] + MODES[: i % 3]
                        for mode in order:
                            server = servers[mode]
                            url = f"{server.url}lab/workspaces/b{i}?token={server.token}"
                            context = browser.new_context(viewport={"width": 1400, "height": 1000})
                            context.set_default_timeout(120_000)
                            context.add_init_script(READY_SCRIPT)
                            try:
                                cold, cpu, report = _load(context, url)
                                warm, _, _ = _load(context, url)
                            finally:
                                context.close()
                            _check(mode, report)
                            if i:
                                loads[mode].cold.append(cold)
                                loads[mode].warm.append(warm)
                                loads[mode].cpu.append(cpu)
                                loads[mode].report = report
                finally:
                    browser.close()
        finally:
            for server in servers.values():
                server.stop()
    return _results(loads)


def _results(loads: dict[str, Loads]) -> list[Result]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    on, off, gone = loads["enabled"], loads["disabled"], loads["absent"]
    added = med(on.cold) - med(gone.cold)
    added_cpu = med(on.cpu) - med(gone.cpu)
    verdict = "within" if added <= TARGET_MS else "OVER"
    print(
        f"  nbflows' front end adds {added:.0f} ms to a cold Lab load ({verdict} the "
        f"≤ {TARGET_MS:.0f} ms target), {added_cpu:.0f} ms of the page's main-thread CPU; "
        f"warm load {med(on.warm) - med(gone.warm):.0f} ms; enabled vs disabled "
        f"{med(on.cold) - med(off.cold):.0f} ms"
    )
    report = on.report
    fetched = (
        f"nbflows' files fetched before ready: {report['ownRequests']} "
        f"({report['ownBytes'] / 1024:.0f} KiB: {', '.join(report['ownFiles'])}); "
        f"its API requests before ready: {len(report['apiRequests'])}; "
        f"all requests {report['requests']} (absent: {gone.report['requests']})"
    )
    return [
        Result(
            name="Lab page load, cold cache, nbflows front end enabled",
            unit="ms",
            samples=on.cold,
            target=f"≤ +{TARGET_MS:.0f} ms",
            reference="the Lab without nbflows' labextension",
            reference_samples=gone.cold,
            notes=(
                f"median added {added:.0f} ms ({verdict} target); with the labextension "
                f"disabled (page config) {med(off.cold):.0f} ms; {fetched}"
            ),
        ),
        Result(
            name="Lab page load, warm cache, nbflows front end enabled",
            unit="ms",
            samples=on.warm,
            target=f"≤ +{TARGET_MS:.0f} ms",
            reference="the Lab without nbflows' labextension",
            reference_samples=gone.warm,
            notes=(
                f"median added {med(on.warm) - med(gone.warm):.0f} ms; disabled "
                f"{med(off.warm):.0f} ms"
            ),
        ),
        Result(
            name="Lab page load, cold cache, the page's main-thread CPU, nbflows enabled",
            unit="ms",
            samples=on.cpu,
            target=f"≤ +{TARGET_MS:.0f} ms",
            reference="the Lab without nbflows' labextension",
            reference_samples=gone.cpu,
            notes=(
                f"median added {added_cpu:.0f} ms (depends less on the machine's load than "
                f"the wall time); disabled {med(off.cpu):.0f} ms"
            ),
        ),
    ]
