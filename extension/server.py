"""`nbflows server`: a headless Jupyter server running the nbflows extension.

The same orchestrator that runs inside `jupyter lab` (API, scheduler, embedded worker, dashboard),
without the notebook UI: for a machine that only schedules and runs deployments.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXTENSION = "nbflows.extension"


def server_argv(
    port: int | None = None,
    ip: str | None = None,
    root_dir: str | None = None,
    token: str | None = None,
    extra: list[str] | None = None,
    result_store: str | None = None,
) -> list[str]:
    """The ServerApp command line for these options (the nbflows extension on, no browser)."""
    argv = [f"--ServerApp.jpserver_extensions={EXTENSION}=True", "--ServerApp.open_browser=False"]
    if port is not None:
        argv.append(f"--ServerApp.port={port}")
    if ip is not None:
        argv.append(f"--ServerApp.ip={ip}")
    argv.append(f"--ServerApp.root_dir={os.path.abspath(root_dir or os.getcwd())}")
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    if result_store is not None:
        argv.append(f"--NBFlowsExtension.result_store_url={result_store}")
    return argv + list(extra or [])


def _banner(app: Any) -> str:
    """What to do next. Never the token itself: logs get copied into bug reports and CI output;
    Jupyter's login URL above the banner (when Jupyter generated the token) or `jupyter server
    list` show it to whoever needs it."""
    base = app.connection_url
    if not base.endswith("/"):
        base += "/"
    provider = app.identity_provider
    generated = getattr(provider, "token_generated", False)
    lines = [
        f"nbflows server: serving notebooks under {os.path.abspath(app.root_dir)}",
        f"  API:        {base}nbflows/api/",
        f"  Dashboard:  {base}nbflows/" + ("  (log in with the URL above)" if generated else ""),
        "  For the CLI and workers in other shells or on other machines:",
        f"    export NBFLOWS_API_URL={base}nbflows/api/",
    ]
    if provider.token:
        where = "the token in the URL above" if generated else "the token you set"
        lines.append(
            f"    export NBFLOWS_API_TOKEN=...   # {where}; `jupyter server list` shows it"
        )
    lines.append("  (on this machine `nbflows` finds the server by itself)  Ctrl-C stops it.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the server until interrupted. Options: --port, --ip, --root-dir, --token; other
    arguments (e.g. `--ServerApp.x=y`) are passed on to Jupyter's ServerApp."""
    parser = argparse.ArgumentParser(
        prog="nbflows server",
        description="Run a headless Jupyter server with the nbflows API, scheduler, embedded "
        "worker and dashboard.",
    )
    parser.add_argument("--port", type=int, help="port (default 8888, or the next free one)")
    parser.add_argument("--ip", help="interface to listen on (default localhost)")
    parser.add_argument("--root-dir", help="directory of the notebooks (default: current)")
    parser.add_argument("--token", help="token clients must send (default: a generated one)")
    parser.add_argument(
        "--result-store",
        metavar="URL",
        help="where notebooks and artifacts of runs are kept: a folder or an fsspec URL such as "
        "s3://bucket/nbflows (default: NBFLOWS_RESULT_STORE_URL, else a folder under the "
        "Jupyter data dir)",
    )
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    from jupyter_server.serverapp import ServerApp

    app = ServerApp.instance()
    app.initialize(
        argv=server_argv(args.port, args.ip, args.root_dir, args.token, extra, args.result_store)
    )
    if EXTENSION not in app.extension_manager.extensions:
        print(
            f"Error: the {EXTENSION} server extension did not load; see the log above.",
            file=sys.stderr,
        )
        sys.exit(1)
    # Print once the loop runs: after the port is bound and start-up checks (e.g. running as
    # root without --allow-root) have passed, so the banner never promises a server that exited.
    app.io_loop.add_callback(lambda: print(_banner(app), flush=True))
    app.start()


if __name__ == "__main__":
    main()
