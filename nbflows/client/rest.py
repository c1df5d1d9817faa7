"""The one HTTP client of the nbflows REST API (see docs/api.md).

Everything that talks to a server goes through `Client`: the CLI, workers, the kernel magics and
the widgets. `get_client()` finds the server on its own (arguments, then environment, then the
running Jupyter servers of this user), and errors come back as the same `nbflows.errors` classes
the server raised, so callers handle one set of exceptions whether they run in or out of process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from nbflows.client.admin_api import AdministrationAPI
from nbflows.client.api_errors import NoServerError, no_server_message
from nbflows.client.deployments_api import DeploymentsAPI
from nbflows.client.discovery import api_root, discover_servers, same_server
from nbflows.client.flow_run import FlowRun, run_state_type
from nbflows.client.flow_runs_api import FlowRunsAPI
from nbflows.client.pools_api import WorkPoolsAPI
from nbflows.protocol import API_TOKEN_ENV, API_URL_ENV, TERMINAL_VALUES

__all__ = ["Client", "get_client", "run_deployment"]


class Client(WorkPoolsAPI, DeploymentsAPI, FlowRunsAPI, AdministrationAPI):
    """A synchronous client of the nbflows REST API; one keep-alive connection pool.

    Methods return the parsed JSON of the response (`None` for 204). Use as a context manager or
    call `close()`. Thread-safe. The connection and relocation are `Transport`'s; the calls are
    grouped by resource in the `*_api` modules of this package.
    """


def get_client(url: str | None = None, token: str | None = None, timeout: float = 30) -> Client:
    """A client for the nbflows API.

    The server is found in this order: the arguments; the environment (`NBFLOWS_API_URL`, the API
    root such as `http://127.0.0.1:8888/nbflows/api/`, and `NBFLOWS_API_TOKEN`); the newest
    running Jupyter server of this user (with its own token). A server URL without `nbflows/api/`
    gets it added; a URL without a token borrows the token of the running server at that URL.
    Raises `NoServerError` when none is found. No request is made here: an unreachable URL
    raises `NoServerError` on the first call.
    """
    explicit_token = token
    url = url or os.environ.get(API_URL_ENV) or None
    if url:
        url = api_root(url)
        if token is None:
            token = os.environ.get(API_TOKEN_ENV) or None
        root_dir = None
        if token is None:
            # A URL without a token: a running server of this user may be that server.
            for server in discover_servers():
                if same_server(url, server.api_url):
                    token = server.get("token") or None
                    root_dir = server.get("root_dir")
                    break
        # A worker's or a run's credential is never traded for another token found on disk.
        relocate = None if token and token.startswith(("nbfw_", "nbfr_")) else "same-url"
        return Client(url, token=token, timeout=timeout, root_dir=root_dir, relocate=relocate)
    servers = discover_servers()
    if not servers:
        raise NoServerError(no_server_message("No running nbflows server was found"))
    server = servers[0]
    # A discovered server comes with its own token; an environment token may be another's.
    return Client(
        server.api_url,
        token=explicit_token if explicit_token is not None else (server.get("token") or None),
        timeout=timeout,
        root_dir=server.get("root_dir"),
        relocate="newest" if explicit_token is None else None,
    )


def run_deployment(
    name: str,
    parameters: Mapping[str, Any] | None = None,
    job_variables: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    client: Client | None = None,
    *,
    tags: Iterable[str] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Create a flow run of a deployment (`"flow/deployment"` or an id), like Prefect's.

    `timeout=0` returns the new run at once; otherwise waits until the run is terminal (forever
    when `timeout` is None) or `timeout` seconds have passed, and returns the run as it then is.
    """
    own = client is None
    active = client if client is not None else get_client()
    try:
        run = active.create_flow_run_from_deployment(
            name,
            parameters=parameters,
            job_variables=job_variables,
            idempotency_key=idempotency_key,
            tags=tags,
        )
        if timeout == 0 or run_state_type(run) in TERMINAL_VALUES:
            return FlowRun(run, client=None if own else active)
        final = active.watch_flow_run(str(run["id"]), timeout=timeout)
        return FlowRun(final, client=None if own else active)
    finally:
        if own:
            active.close()
