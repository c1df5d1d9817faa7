"""The connection under every `Client`: requests, errors, relocation after a server restart, and
the small helpers the resource methods share (`segment`, `drop_none`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar, cast
from urllib.parse import quote

import httpx

from nbflows.client.api_errors import (
    APIError,
    NoServerError,
    error_from_response,
    no_server_message,
)
from nbflows.client.discovery import discover_servers, ensure_slash, same_server

#: The server caps long-polls at this many seconds.
MAX_WAIT = 30.0


def segment(value: Any) -> str:
    """One URL path segment, quoted so that `/`, `?`, `#` and spaces in names stay inside it."""
    return quote(str(value), safe="")


def drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class Transport:
    """The connection of a `Client` to its server: one keep-alive connection pool, requests,
    errors raised as `nbflows.errors` classes, and finding the server again after a restart.

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
        self.api_url = ensure_slash(api_url)
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
            here = [x for x in servers if same_server(self.api_url, x.api_url)]
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

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for http in [*self._retired, self._http]:
            http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api_url!r})"

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
            kwargs["params"] = drop_none(params)
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
                no_server_message(f"Cannot connect to the nbflows server at {self.api_url}")
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


_T = TypeVar("_T", bound=Transport)
