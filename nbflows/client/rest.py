"""The one HTTP client of the nbflows REST API (see docs/api.md).

Everything that talks to a server goes through `Client`: the CLI, workers, the kernel magics and
the widgets. `get_client()` finds the server on its own (arguments, then environment, then the
running Jupyter servers of this user), and errors come back as the same `nbflows.errors` classes
the server raised, so callers handle one set of exceptions whether they run in or out of process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlsplit

import httpx

from nbflows.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NBFlowsError,
    NotAvailable,
    NotFound,
    TooLarge,
)
from nbflows.protocol import API_TOKEN_ENV, API_URL_ENV, TERMINAL_VALUES

__all__ = [
    "APIError",
    "Client",
    "FlowRun",
    "NoServerError",
    "ServerInfo",
    "discover_servers",
    "get_client",
    "run_deployment",
]

API_PATH = "nbflows/api/"

#: Server error `reason` → the exception the client raises (the server names its class).
_REASONS: dict[str, type[NBFlowsError]] = {
    cls.__name__: cls
    for cls in (BadRequest, Forbidden, NotFound, Conflict, InvalidInput, TooLarge, NotAvailable)
}

#: Terminal state types (kept here as strings so the client does not depend on the store).

#: The server caps long-polls at this many seconds.
MAX_WAIT = 30.0


class NoServerError(NBFlowsError):
    """No nbflows server could be found or reached."""

    status = 503


class APIError(NBFlowsError):
    """An HTTP error that is not one of the domain errors (auth, missing route, server bug)."""

    status = 500

    def __init__(self, message: str, *, status: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.status_code = status
        self.text = text


def _no_server_message(detail: str) -> str:
    return (
        f"{detail}. Start one with `jupyter lab` (with the nbflows extension) or `nbflows server`, "
        f"or set {API_URL_ENV} (e.g. http://127.0.0.1:8888/nbflows/api/) and {API_TOKEN_ENV}."
    )


# --------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------


class ServerInfo(dict[str, Any]):
    """One running Jupyter server, as read from its `jpserver-<pid>.json` runtime file."""

    @property
    def api_url(self) -> str:
        return _ensure_slash(str(self["url"])) + API_PATH


def _ensure_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def discover_servers(runtime_dir: str | os.PathLike[str] | None = None) -> list[ServerInfo]:
    """The running Jupyter servers of this user, newest first.

    Reads `jpserver-*.json` in the Jupyter runtime directory; files whose process is gone, that
    are half-written, or that describe a Unix-socket server are skipped.
    """
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    directory = Path(runtime_dir)
    if not directory.is_dir():
        return []
    found: list[tuple[float, ServerInfo]] = []
    for path in directory.glob("jpserver-*.json"):
        try:
            mtime = path.stat().st_mtime
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # vanished or being written right now
        if not isinstance(info, dict) or not info.get("url") or info.get("sock"):
            continue
        pid = info.get("pid")
        if not isinstance(pid, int) or not _pid_alive(pid):
            continue
        found.append((mtime, ServerInfo(info)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [info for _, info in found]


def api_root(url: str) -> str:
    """The API root for a URL: a server's URL (`http://host:8888/`) gets `nbflows/api/` added."""
    url = _ensure_slash(url.strip())
    if urlsplit(url).path.rstrip("/").endswith("/api"):
        return url
    return url + API_PATH


def _same_server(a: str, b: str) -> bool:
    def key(url: str) -> tuple[str, int | None, str]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            host = "localhost"
        return host, parts.port, _ensure_slash(parts.path)

    return key(a) == key(b)


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
                if _same_server(url, server.api_url):
                    token = server.get("token") or None
                    root_dir = server.get("root_dir")
                    break
        # A worker's or a run's credential is never traded for another token found on disk.
        relocate = None if token and token.startswith(("nbfw_", "nbfr_")) else "same-url"
        return Client(url, token=token, timeout=timeout, root_dir=root_dir, relocate=relocate)
    servers = discover_servers()
    if not servers:
        raise NoServerError(_no_server_message("No running nbflows server was found"))
    server = servers[0]
    # A discovered server comes with its own token; an environment token may be another's.
    return Client(
        server.api_url,
        token=explicit_token if explicit_token is not None else (server.get("token") or None),
        timeout=timeout,
        root_dir=server.get("root_dir"),
        relocate="newest" if explicit_token is None else None,
    )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _seg(value: Any) -> str:
    """One URL path segment, quoted so that `/`, `?`, `#` and spaces in names stay inside it."""
    return quote(str(value), safe="")


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def error_from_response(response: httpx.Response) -> NBFlowsError:
    """The exception for an HTTP error response.

    A JSON body whose `reason` is a domain error class name becomes that class with the server's
    message and details; anything else becomes `APIError` with the status and a hint.
    """
    text = response.text
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = body.get("reason")
        message = body.get("message") or ""
        cls = _REASONS.get(reason) if isinstance(reason, str) else None
        if cls is not None:
            details = body.get("details")
            exc = cls(str(message) or f"{reason} ({response.status_code})")
            if isinstance(details, dict):
                exc.details = details
            return exc
        text = str(message) or text
    status = response.status_code
    where = f"{response.request.method} {response.request.url.copy_with(query=None)}"
    if status in (401, 403):
        hint = (
            f"the server refused the request ({status} {text or 'Forbidden'}); "
            f"check the token (--token or {API_TOKEN_ENV})"
        )
    elif status == 404:
        hint = (
            f"{where} does not exist (404); is the nbflows extension enabled on that server, "
            f"and is {API_URL_ENV} the API root ending in /nbflows/api/?"
        )
    else:
        snippet = " ".join(text.split())[:300]
        hint = f"{where} failed with HTTP {status}" + (f": {snippet}" if snippet else "")
    return APIError(hint, status=status, text=text)


# --------------------------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------------------------


class Client:
    """A synchronous client of the nbflows REST API; one keep-alive connection pool.

    Methods return the parsed JSON of the response (`None` for 204). Use as a context manager or
    call `close()`. Thread-safe.

    `relocate` lets the client find its server again when it cannot be reached or refuses the
    token (it restarted with a new one): `"same-url"` takes the token of the running server of
    this user at the same URL, `"newest"` (a client made by discovery) that one, else the
    newest running server. `generation` counts the moves.
    """

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        timeout: float = 30,
        *,
        root_dir: str | None = None,
        relocate: str | None = None,
    ) -> None:
        self.timeout = timeout
        #: The server's root directory when known from discovery (else ask `health()`).
        self.root_dir = root_dir
        self.relocate = relocate
        self.generation = 0
        self._lock = threading.Lock()
        self._looked_at = 0.0
        self._retired: list[httpx.Client] = []
        self._point_at(api_url, token)

    def _point_at(self, api_url: str, token: str | None) -> None:
        self.api_url = _ensure_slash(api_url)
        self.token = token
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=self.timeout)

    def _found_again(self, generation: int) -> bool:
        """After a failed or refused request: look for the server again (see `relocate`); True
        when requests now go elsewhere, so the failed one is worth sending again."""
        if self.relocate is None:
            return False
        with self._lock:
            if self.generation != generation:
                return True  # another thread has moved the client meanwhile
            now = time.monotonic()
            if now - self._looked_at < 1.0:  # a down server must not cost a scan per request
                return False
            self._looked_at = now
            servers = discover_servers()
            here = [x for x in servers if _same_server(self.api_url, x.api_url)]
            # The same server restarted is preferred; found by discovery, any newest one will do.
            servers = here or (servers if self.relocate == "newest" else [])
            if not servers:
                return False
            url = self.api_url if here else servers[0].api_url
            token = servers[0].get("token") or None
            if (url, token) == (self.api_url, self.token):
                return False
            self._retired.append(self._http)  # other threads may still be using it
            self._point_at(url, token)
            self.root_dir = servers[0].get("root_dir") or self.root_dir
            self.generation += 1
            return True

    # -- plumbing ------------------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for http in [*self._retired, self._http]:
            http.close()

    def __repr__(self) -> str:
        return f"Client({self.api_url!r})"

    @property
    def dashboard_url(self) -> str:
        """The dashboard page (`{base_url}nbflows/`) of the same server."""
        base = self.api_url
        return base[: -len("api/")] if base.endswith("/api/") else base

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        content: bytes | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one request; return the parsed JSON body (with `raw`, the body's bytes), or
        raise the matching `NBFlowsError`. `content` sends bytes as the body (a file)."""
        kwargs: dict[str, Any] = {}
        if json_body is not None:
            kwargs["json"] = json_body
        if content is not None:
            kwargs["content"] = content
            kwargs["headers"] = {"Content-Type": "application/octet-stream"}
        if params:
            kwargs["params"] = _drop_none(params)
        if timeout is not None:
            kwargs["timeout"] = timeout
        generation = self.generation
        try:
            response = self._send(method, path, kwargs)
        except NoServerError:
            if not self._found_again(generation):
                raise
            response = self._send(method, path, kwargs)
        if response.status_code in (401, 403) and self._found_again(generation):
            response = self._send(method, path, kwargs)
        if response.status_code >= 400:
            raise error_from_response(response)
        if raw:
            return response.content
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise APIError(
                f"{method} {self.api_url}{path} answered with non-JSON content "
                f"({response.headers.get('content-type', 'unknown type')}); is this an nbflows "
                "server?",
                status=response.status_code,
                text=response.text,
            ) from exc

    def _send(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise NoServerError(
                _no_server_message(f"Cannot connect to the nbflows server at {self.api_url}")
            ) from exc
        except httpx.TimeoutException as exc:
            raise APIError(
                f"{method} {self.api_url}{path} timed out ({type(exc).__name__}); "
                "the server is running but did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise APIError(f"{method} {self.api_url}{path} failed: {exc}") from exc

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def _post(self, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        return self.request("POST", path, json_body={} if body is None else body, timeout=timeout)

    def _patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, json_body=dict(body))

    def _delete(self, path: str) -> None:
        self.request("DELETE", path)

    def _long_timeout(self, wait: float | None) -> float | None:
        """A request timeout that outlasts a server-side long-poll of `wait` seconds."""
        if not wait:
            return None
        return max(self.timeout, min(float(wait), MAX_WAIT) + self.timeout)

    # -- health --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._get("health"))

    # -- work pools ----------------------------------------------------------------------------

    def create_work_pool(
        self,
        name: str,
        type: str,
        description: str | None = None,
        base_job_template: dict[str, Any] | None = None,
        concurrency_limit: int | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "name": name,
                "type": type,
                "description": description,
                "base_job_template": base_job_template,
                "concurrency_limit": concurrency_limit,
            }
        )
        body["paused"] = paused
        return cast(dict[str, Any], self._post("work_pools", body))

    def list_work_pools(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("work_pools"))

    def read_work_pool(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pools/{_seg(name)}"))

    def update_work_pool(self, name: str, **fields: Any) -> dict[str, Any]:
        """PATCH any of `description, base_job_template, concurrency_limit, paused`.

        Fields are sent as given, so `concurrency_limit=None` clears the limit.
        """
        return cast(dict[str, Any], self._patch(f"work_pools/{_seg(name)}", fields))

    def delete_work_pool(self, name: str) -> None:
        self._delete(f"work_pools/{_seg(name)}")

    def list_work_pool_types(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("work_pool_types"))

    def get_default_base_job_template(self, type: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pool_types/{_seg(type)}/base_job_template"))

    # -- work queues ---------------------------------------------------------------------------

    def create_work_queue(
        self,
        pool: str,
        name: str,
        priority: int | None = None,
        concurrency_limit: int | None = None,
        description: str | None = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "name": name,
                "priority": priority,
                "concurrency_limit": concurrency_limit,
                "description": description,
            }
        )
        body["paused"] = paused
        return cast(dict[str, Any], self._post(f"work_pools/{_seg(pool)}/queues", body))

    def list_work_queues(self, pool: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"work_pools/{_seg(pool)}/queues"))

    def read_work_queue(self, pool: str, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"work_pools/{_seg(pool)}/queues/{_seg(name)}"))

    def update_work_queue(self, pool: str, name: str, **fields: Any) -> dict[str, Any]:
        return cast(
            dict[str, Any], self._patch(f"work_pools/{_seg(pool)}/queues/{_seg(name)}", fields)
        )

    def delete_work_queue(self, pool: str, name: str) -> None:
        self._delete(f"work_pools/{_seg(pool)}/queues/{_seg(name)}")

    # -- workers -------------------------------------------------------------------------------

    def claim(
        self,
        pool: str,
        worker: str,
        queues: Iterable[str] | None = None,
        limit: int = 1,
        wait: float = 0,
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` due runs; with `wait`, long-poll up to that many seconds (max 30)."""
        body: dict[str, Any] = {"worker": worker, "limit": limit}
        if queues is not None:
            body["queues"] = list(queues)
        if wait:
            body["wait"] = wait
        result = self._post(
            f"work_pools/{_seg(pool)}/claim", body, timeout=self._long_timeout(wait)
        )
        return cast(list[dict[str, Any]], result)

    def heartbeat(
        self,
        pool: str,
        worker: str,
        running: Iterable[str],
        limit: int | None = None,
        heartbeat_interval: float | None = None,
        wait: float = 0,
        fences: Mapping[str, int] | None = None,
        problem: str | None = None,
    ) -> dict[str, Any]:
        """Report the runs this worker is executing (`fences`: the fencing token of each); the
        answer lists runs it must cancel. `problem` says why the worker cannot execute the
        pool's runs now (shown on the pool).

        With `wait`, the server holds the request up to that long and answers as soon as one of
        the worker's runs is to be cancelled (so cancellation does not wait for the next beat).
        """
        body: dict[str, Any] = {"name": worker, "running": list(running)}
        if fences:
            body["fences"] = dict(fences)
        if problem is not None:
            body["problem"] = problem
        if limit is not None:
            body["limit"] = limit
        if heartbeat_interval is not None:
            body["heartbeat_interval"] = heartbeat_interval
        if wait:
            body["wait"] = wait
        path = f"work_pools/{_seg(pool)}/workers/heartbeat"
        return cast(dict[str, Any], self._post(path, body, timeout=self._long_timeout(wait)))

    def list_workers(self, pool: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"work_pools/{_seg(pool)}/workers"))

    # -- deployments ---------------------------------------------------------------------------

    def deploy(self, **body: Any) -> dict[str, Any]:
        """Create or update (by flow name + name) a deployment; see docs/api.md for the body."""
        return cast(dict[str, Any], self._post("deployments", _drop_none(body)))

    def deploy_pipeline(self, **body: Any) -> dict[str, Any]:
        """Deploy a pipeline: `name`, `pipeline` (its JSON), and optionally `parameters`,
        `schedules`, `paused`, `tags`, `description`, `base_dir`."""
        return cast(dict[str, Any], self._post("pipelines", _drop_none(body)))

    def list_deployments(
        self, flow_name: str | None = None, work_pool_name: str | None = None
    ) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]],
            self._get("deployments", flow_name=flow_name, work_pool_name=work_pool_name),
        )

    def read_deployment(self, ref: str) -> dict[str, Any]:
        """A deployment by id or by `"flow-name/deployment-name"`."""
        flow_name, sep, name = str(ref).partition("/")
        if sep:
            if not flow_name or not name:
                raise InvalidInput(
                    f"'{ref}' is not a deployment reference; use 'flow-name/deployment-name' "
                    "or a deployment id"
                )
            return cast(
                dict[str, Any], self._get(f"deployments/name/{_seg(flow_name)}/{_seg(name)}")
            )
        return cast(dict[str, Any], self._get(f"deployments/{_seg(ref)}"))

    def _deployment_id(self, ref: str) -> str:
        # Routes other than read take the id; a name costs one extra GET.
        if "/" in str(ref):
            return str(self.read_deployment(ref)["id"])
        return str(ref)

    def update_deployment(self, ref: str, **fields: Any) -> dict[str, Any]:
        """PATCH any of `paused, parameters, job_variables, schedules, tags, description,
        work_queue_name`."""
        return cast(
            dict[str, Any], self._patch(f"deployments/{_seg(self._deployment_id(ref))}", fields)
        )

    def delete_deployment(self, ref: str) -> None:
        self._delete(f"deployments/{_seg(self._deployment_id(ref))}")

    def read_deployment_notebook(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """The frozen notebook of a deployment (the latest version unless `version` is given)."""
        return cast(
            dict[str, Any],
            self._get(f"deployments/{_seg(self._deployment_id(ref))}/notebook", version=version),
        )

    def upcoming_runs(self, ref: str, limit: int = 10) -> list[dict[str, Any]]:
        return cast(
            list[dict[str, Any]],
            self._get(f"deployments/{_seg(self._deployment_id(ref))}/upcoming", limit=limit),
        )

    def create_flow_run_from_deployment(
        self,
        ref: str,
        parameters: Mapping[str, Any] | None = None,
        job_variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        tags: Iterable[str] | None = None,
        scheduled_time: str | None = None,
    ) -> dict[str, Any]:
        body = _drop_none(
            {
                "parameters": dict(parameters) if parameters is not None else None,
                "job_variables": dict(job_variables) if job_variables is not None else None,
                "idempotency_key": idempotency_key,
                "tags": list(tags) if tags is not None else None,
                "scheduled_time": scheduled_time,
            }
        )
        return cast(
            dict[str, Any], self._post(f"deployments/{_seg(self._deployment_id(ref))}/runs", body)
        )

    # -- flow runs -----------------------------------------------------------------------------

    def create_flow_run(self, flow_name: str, **fields: Any) -> dict[str, Any]:
        """An interactive flow run (`%%flow`); fields as in `POST flow_runs`."""
        return cast(
            dict[str, Any], self._post("flow_runs", {"flow_name": flow_name, **_drop_none(fields)})
        )

    def read_flow_run(self, id: str) -> FlowRun:
        """The run (a dict of its fields; `.artifacts`, `.read_artifact(name)`, `.export()`)."""
        return FlowRun(self._get(f"flow_runs/{_seg(id)}"), client=self)

    def list_flow_runs(
        self,
        state: str | Iterable[str] | None = None,
        deployment_id: str | None = None,
        flow_name: str | None = None,
        work_pool_name: str | None = None,
        parent_run_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Flow runs, newest first; `state` is one state type or several."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        return cast(
            list[dict[str, Any]],
            self._get(
                "flow_runs",
                state=state or None,
                deployment_id=deployment_id,
                flow_name=flow_name,
                work_pool_name=work_pool_name,
                parent_run_id=parent_run_id,
                limit=limit,
                offset=offset,
            ),
        )

    def set_flow_run_state(
        self,
        id: str,
        type: str,
        name: str | None = None,
        message: str | None = None,
        retry: bool = False,
        worker: str | None = None,
        fence: int | None = None,
    ) -> dict[str, Any]:
        """Change a run's state; a `worker` reporting (with the `fence` its claim returned) is
        refused (Conflict) once it no longer holds the run (it was crashed and retried
        elsewhere, say)."""
        body = _drop_none(
            {"type": type, "name": name, "message": message, "worker": worker, "fence": fence}
        )
        if retry:
            body["retry"] = True
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/set_state", body))

    def heartbeat_flow_run(self, id: str, heartbeat_interval: float) -> dict[str, Any]:
        """A beat for a run created with `heartbeat_interval` (a kernel's `%%flow` run)."""
        body = {"heartbeat_interval": heartbeat_interval}
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/heartbeat", body))

    def record_output(self, id: str, name: str, value: Any) -> dict[str, Any]:
        """Record output `name` of run `id` (what `nbflows.output(name, value)` sends)."""
        body = {"name": name, "value": value}
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/outputs", body))

    def repair_flow_run(self, id: str) -> dict[str, Any]:
        """Re-run a failed pipeline run from its failed steps, reusing the steps that succeeded."""
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/repair"))

    def read_pipeline_run(self, id: str) -> dict[str, Any]:
        """A pipeline run's DAG: `{"flow_run", "steps", "edges", "step_runs"}`."""
        return cast(dict[str, Any], self._get(f"flow_runs/{_seg(id)}/pipeline"))

    def cancel_flow_run(self, id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/cancel"))

    def read_flow_run_notifications(self, id: str) -> list[dict[str, Any]]:
        """What automations did for the run: target (masked), status, attempts, last error."""
        return cast(list[dict[str, Any]], self._get(f"flow_runs/{_seg(id)}/notifications"))

    # -- automations ---------------------------------------------------------------------------

    def create_automation(
        self,
        name: str,
        trigger: Mapping[str, Any],
        actions: Sequence[Mapping[str, Any]],
        scope: Mapping[str, Any] | None = None,
        description: str | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """A rule: `trigger` e.g. {"kind": "state", "states": ["FAILED"]} or {"kind": "late",
        "after": 60}; `actions` e.g. [{"type": "notify", "url": "mailto://..."}]."""
        body = _drop_none(
            {
                "name": name,
                "trigger": dict(trigger),
                "actions": [dict(a) for a in actions],
                "scope": dict(scope) if scope else None,
                "description": description,
            }
        )
        body["enabled"] = enabled
        return cast(dict[str, Any], self._post("automations", body))

    def list_automations(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("automations"))

    def read_automation(self, ref: str) -> dict[str, Any]:
        """By name or id."""
        return cast(dict[str, Any], self._get(f"automations/{_seg(ref)}"))

    def update_automation(self, ref: str, **fields: Any) -> dict[str, Any]:
        """PATCH `enabled` (pause/resume) or `description`."""
        return cast(dict[str, Any], self._patch(f"automations/{_seg(ref)}", fields))

    def delete_automation(self, ref: str) -> None:
        self._delete(f"automations/{_seg(ref)}")

    def list_automation_deliveries(self, ref: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get(f"automations/{_seg(ref)}/deliveries"))

    def read_run_secrets(self, id: str) -> dict[str, str]:
        """The values of the secrets run `id` refers to (a worker credential holding it only)."""
        return dict(self._get(f"flow_runs/{_seg(id)}/secrets")["values"])

    # -- secrets and worker credentials ---------------------------------------------------------

    def set_secret(self, name: str, value: str) -> None:
        self.request("PUT", f"secrets/{_seg(name)}", json_body={"value": value})

    def list_secrets(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("secrets"))

    def delete_secret(self, name: str) -> None:
        self._delete(f"secrets/{_seg(name)}")

    def create_worker_token(self, name: str, pools: list[str]) -> dict[str, Any]:
        """A new worker credential; its `token` is in this answer only."""
        return cast(dict[str, Any], self._post("worker_tokens", {"name": name, "pools": pools}))

    def list_worker_tokens(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._get("worker_tokens"))

    def revoke_worker_token(self, name: str) -> None:
        self._delete(f"worker_tokens/{_seg(name)}")

    def write_logs(self, id: str, lines: Iterable[str | Mapping[str, Any]]) -> dict[str, Any]:
        """Append log lines (strings or LogLine-shaped dicts) to a run."""
        items = [{"message": line} if isinstance(line, str) else dict(line) for line in lines]
        return cast(dict[str, Any], self._post(f"flow_runs/{_seg(id)}/logs", items))

    def read_logs(
        self,
        id: str,
        after: int = 0,
        limit: int = 1000,
        wait: float | None = None,
        state: str | None = None,
    ) -> dict[str, Any]:
        """Log lines after `after`, with the run: `{"items", "next_after", "flow_run"}`.

        With `wait`, the server holds the request until there are new lines, the run's state type
        differs from `state`, or the run is terminal (at most 30 s).
        """
        return cast(
            dict[str, Any],
            self.request(
                "GET",
                f"flow_runs/{_seg(id)}/logs",
                params={"after": after, "limit": limit, "wait": wait or None, "state": state},
                timeout=self._long_timeout(wait),
            ),
        )

    def read_flow_run_notebook(self, id: str) -> dict[str, Any]:
        return cast(dict[str, Any], self._get(f"flow_runs/{_seg(id)}/notebook"))

    def write_flow_run_notebook(
        self,
        id: str,
        nb: Mapping[str, Any],
        worker: str | None = None,
        fence: int | None = None,
    ) -> Any:
        """Store a run's executed notebook; a `worker`'s only while it holds the run (`fence`)."""
        params = {"worker": worker, "fence": fence}
        return self.request(
            "PUT", f"flow_runs/{_seg(id)}/notebook", json_body=dict(nb), params=params
        )

    def read_deployment_files(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """The project files a deployment version carries: `{"notebook_dir", "files"}`."""
        path = f"deployments/{_seg(self._deployment_id(ref))}/files"
        return cast(dict[str, Any], self._get(path, version=version))

    def read_deployment_file(self, ref: str, sha256: str) -> bytes:
        path = f"deployments/{_seg(self._deployment_id(ref))}/files/{_seg(sha256)}"
        return cast(bytes, self.request("GET", path, raw=True, timeout=300))

    def list_flow_run_artifacts(self, id: str) -> list[dict[str, Any]]:
        """The artifacts of a run: `{"name", "size", "sha256", "created"}` each."""
        return cast(list[dict[str, Any]], self._get(f"flow_runs/{_seg(id)}/artifacts"))

    def read_flow_run_artifact(self, id: str, name: str) -> bytes:
        return cast(
            bytes,
            self.request("GET", f"flow_runs/{_seg(id)}/artifacts/{_seg(name)}", raw=True),
        )

    def write_flow_run_artifact(
        self,
        id: str,
        name: str,
        data: bytes,
        worker: str | None = None,
        fence: int | None = None,
    ) -> dict[str, Any]:
        """Store a file as an artifact of a run; a `worker`'s only while it holds the run."""
        return cast(
            dict[str, Any],
            self.request(
                "PUT",
                f"flow_runs/{_seg(id)}/artifacts/{_seg(name)}",
                content=data,
                params={"worker": worker, "fence": fence},
            ),
        )

    def write_flow_run_export(
        self, id: str, to: str, data: bytes, worker: str, fence: int | None = None
    ) -> dict[str, Any]:
        """Store the run's notebook exported as `to` (the worker holding the run, after it)."""
        path = f"flow_runs/{_seg(id)}/exports/{_seg(to)}"
        params = {"worker": worker, "fence": fence}
        return cast(dict[str, Any], self.request("PUT", path, content=data, params=params))

    def export_flow_run_notebook(self, id: str, to: str = "html") -> bytes:
        """The executed notebook as `to` (html, or pdf where the server has Chromium)."""
        path = f"flow_runs/{_seg(id)}/exports/{_seg(to)}"
        return cast(bytes, self.request("GET", path, raw=True, timeout=300))

    def prune_flow_runs(
        self,
        older_than_days: float | None = None,
        keep_last: int | None = None,
        deployment: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Remove finished runs (with their logs, notebooks, artifacts) that are older than
        `older_than_days` and/or beyond the newest `keep_last` per deployment."""
        body = _drop_none(
            {
                "older_than_days": older_than_days,
                "keep_last": keep_last,
                "deployment": deployment,
                "dry_run": dry_run,
            }
        )
        return cast(
            dict[str, Any], self.request("POST", "flow_runs/prune", json_body=body, timeout=600)
        )

    def watch_flow_run(
        self,
        id: str,
        on_log: Callable[[dict[str, Any]], Any] | None = None,
        on_state: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Follow a run until it is terminal; return the final run.

        `on_log(line)` is called for every log line in order, `on_state(run)` once with the
        current state and again at every state change (type or name). Uses the logs long-poll,
        so a change is seen as soon as the server has it. With `timeout` (seconds), returns the
        run as it is once that much time has passed, terminal or not.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        after = 0
        seen: tuple[str, str] | None = None
        run: dict[str, Any] | None = None
        wait: float = 0  # the first page answers at once with the current state
        page_size = 1000
        while True:
            state_type = None if run is None else _state_type(run)
            page = self.read_logs(
                id, after=after, limit=page_size, wait=wait or None, state=state_type
            )
            for line in page.get("items") or []:
                if on_log is not None:
                    on_log(line)
            after = int(page.get("next_after", after))
            run = cast(dict[str, Any], page.get("flow_run") or self.read_flow_run(id))
            current = (_state_type(run), str((run.get("state") or {}).get("name") or ""))
            if current != seen:
                seen = current
                if on_state is not None:
                    on_state(run)
            # A full page means more lines are waiting: fetch them before anything else.
            more = len(page.get("items") or []) >= page_size
            if current[0] in TERMINAL_VALUES and not more:
                # The server may have read the lines just before the run ended; only a page
                # asked for after the run was known to be terminal is sure to hold them all.
                if state_type in TERMINAL_VALUES:
                    return run
                more = True
            if more:
                wait = 0
                continue
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return run
                wait = min(MAX_WAIT, remaining)
            else:
                wait = MAX_WAIT


def _state_type(run: Mapping[str, Any]) -> str:
    return str((run.get("state") or {}).get("type") or "")


class FlowRun(dict[str, Any]):
    """A flow run as the API returns it, with its outputs one call away. Without a client of
    its own it finds the server as `get_client()` does."""

    def __init__(self, fields: Mapping[str, Any], client: Client | None = None) -> None:
        super().__init__(fields)
        self._client = client

    def _api(self) -> Client:
        return self._client if self._client is not None else get_client()

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        """The files the run wrote under its output folder: `{"name", "size", "sha256"}`."""
        return self._api().list_flow_run_artifacts(str(self["id"]))

    def read_artifact(self, name: str) -> bytes:
        return self._api().read_flow_run_artifact(str(self["id"]), name)

    def export(self, to: str = "html") -> bytes:
        """The executed notebook as HTML (or PDF where the server can make it)."""
        return self._api().export_flow_run_notebook(str(self["id"]), to)


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
        if timeout == 0 or _state_type(run) in TERMINAL_VALUES:
            return FlowRun(run, client=None if own else active)
        final = active.watch_flow_run(str(run["id"]), timeout=timeout)
        return FlowRun(final, client=None if own else active)
    finally:
        if own:
            active.close()
