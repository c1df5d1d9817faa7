"""Base handler: JSON in and out, domain errors mapped to HTTP codes in one place."""

from __future__ import annotations

import asyncio
import json
import sys
from http.client import responses
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from tornado import web

from nbflows.errors import BadRequest, InvalidInput, NBFlowsError
from nbflows.extension.orchestrator import Orchestrator
from nbflows.services import credentials
from nbflows.services.credentials import Principal
from nbflows.services.limits import Limits, check_parameters, too_large
from nbflows.services.schemas.values import load_json

_METHODS = ("get", "post", "put", "patch", "delete")
_NO_CREDENTIALS = (
    "no valid credentials: send the Jupyter server's token as 'Authorization: token <token>'"
)
_DEAD_CREDENTIAL = (
    "this nbflows credential is unknown or revoked, or the run attempt it was given to has ended"
)
Q = TypeVar("Q", bound=BaseModel)

#: Request bodies larger than this are decoded on the orchestrator's threads, not on the event
#: loop (a 40 MB executed notebook takes the loop's whole attention for a second otherwise).
BIG_BODY = 256 * 1024
#: Big bodies go in and out in pieces of this size, one per turn of the event loop.
CHUNK = 1024 * 1024


def decode_json(raw: bytes) -> Any:
    """The request body's JSON value; BadRequest when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError as err:
        raise BadRequest(f"the request body is not valid JSON: {err}") from None


#: What `json_object_keys` runs: the top-level keys of the JSON object on stdin, or the error.
_KEYS = """
import json, sys
try:
    value = json.load(sys.stdin.buffer)
except ValueError as err:
    print(json.dumps({"error": f"the request body is not valid JSON: {err}"}))
else:
    print(json.dumps({"keys": sorted(value) if isinstance(value, dict) else None}))
"""


async def json_object_keys(raw: bytes) -> list[str] | None:
    """The top-level keys of the JSON object `raw` (None when it is JSON but not an object);
    BadRequest when it is not JSON.

    Decoded in a short-lived process: decoding holds Python's interpreter lock, so on one of
    the server's threads tens of megabytes would still stall the event loop for a fraction of
    a second; in a process of its own the loop only streams the bytes through a pipe.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-S",
        "-c",
        _KEYS,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    view = memoryview(raw)
    for start in range(0, len(view), CHUNK):  # one chunk per step: no 40 MB copy in one go
        proc.stdin.write(view[start : start + CHUNK])
        await proc.stdin.drain()
    proc.stdin.close()
    out = await proc.stdout.read()
    await proc.wait()
    try:
        answer = json.loads(out)
    except ValueError:
        raise RuntimeError(f"the JSON check exited {proc.returncode} without an answer") from None
    if "error" in answer:
        raise BadRequest(answer["error"])
    return answer["keys"]


@web.stream_request_body
class NBFlowsHandler(APIHandler):
    """Every nbflows route: Jupyter authentication + authorization on resource `nbflows`.

    Bodies are received in chunks so that one over `max_body_size` is refused (413) without
    being held in memory; `self.request.body` holds the body once it is complete.
    """

    auth_resource = "nbflows"
    _body_size = 0
    #: The worker or run a credential speaks for; None for a Jupyter user.
    principal: Principal | None = None
    #: Whether a credential's call is within its scope, when judged with the credential.
    credential_within: bool | None = None

    @property
    def orch(self) -> Orchestrator:
        return self.settings["nbflows_orchestrator"]

    async def prepare(self) -> None:  # type: ignore[override]
        # A worker's or a run's credential is ours to check; anything else is Jupyter's.
        token = _request_token(self.request.headers.get("Authorization", ""))
        if token and credentials.is_credential(token):
            from nbflows.extension.permissions import identify, route_spec

            spec = route_spec(type(self), (self.request.method or "").lower())
            principal, within = await self.orch.call(identify, token, spec, self.path_kwargs)
            if principal is None:
                raise web.HTTPError(401, _DEAD_CREDENTIAL)
            from jupyter_server.auth import User

            self.principal = principal
            self.credential_within = within
            # A header token is not a cookie: no XSRF check applies.
            self.current_user = self._jupyter_current_user = User(principal.username)
            return
        await super().prepare()

    def get_login_url(self) -> str:
        # `@web.authenticated` found no user: that is a 401 (403 is for a user not allowed).
        if not self.current_user:
            raise web.HTTPError(401, _NO_CREDENTIALS)
        return super().get_login_url()

    def check_xsrf_cookie(self) -> None:
        # Without any credentials, say so (401) before asking for an XSRF token.
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            raise web.HTTPError(401, _NO_CREDENTIALS)
        super().check_xsrf_cookie()

    @property
    def limits(self) -> Limits:
        return self.settings.get("nbflows_limits") or Limits()

    def data_received(self, chunk: bytes) -> None:
        if self._body_size == 0:
            self.request.body = bytearray()  # type: ignore[assignment]
        self._body_size += len(chunk)
        if self._body_size <= self.limits.max_body_size:
            self.request.body.extend(chunk)  # type: ignore[attr-defined]
        elif self.request.body:
            self.request.body = b""  # over the limit: what came is let go, the rest ignored

    async def body(self) -> Any:
        """The JSON body, checked by `nbflows.services.schemas.values.load_json` (`{}` when empty) and within
        the size limits of the body and of its `parameters`. A big body is decoded on the
        orchestrator's threads, not on the event loop."""
        limits = self.limits
        if self._body_size > limits.max_body_size:
            raise too_large("the request body", self._body_size, limits, "max_body_size")
        raw = self.request.body
        if len(raw) > BIG_BODY:
            data = await self.orch.compute(load_json, bytes(raw))
        else:
            data = load_json(raw)
        if (
            isinstance(data, dict)
            and "parameters" in data
            and self._body_size > limits.max_parameters_size
        ):
            check_parameters(data["parameters"], limits)
        return data

    def query_args(self, model: type[Q]) -> Q:
        """The query string read by `model` (the model the API document shows). A value of the
        wrong type is a 400, one out of range or unknown a 422."""
        values = {}
        for name in model.model_fields:
            # The raw value: tornado's own getters turn control characters into spaces.
            given = self.request.query_arguments.get(name)
            if not given:
                continue
            try:
                values[name] = given[-1].decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"query parameter '{name}' is not UTF-8 text") from None
        try:
            return model.model_validate(values)
        except ValidationError as err:
            problems = [
                f"query parameter '{'.'.join(map(str, e['loc']))}': "
                + e["msg"].removeprefix("Value error, ")
                for e in err.errors()
            ]
            malformed = any(
                e["type"].endswith(("_parsing", "_type")) or e["type"] == "finite_number"
                for e in err.errors()
            )
            raise (BadRequest if malformed else InvalidInput)("; ".join(problems)) from None

    def reply(self, data: Any, status: int = 200, location: str | None = None) -> None:
        """Answer `data` as JSON; with `check_replies`, checked against the response model the
        API document declares for this route, method and status (`nbflows.extension.api`)."""
        self.set_status(status)
        if location:
            self.set_header("Location", location)
        if status == 204:
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(self._serialise(data, status))

    def _serialise(self, data: Any, status: int) -> bytes:
        from nbflows.extension.api import response_adapter  # the route table imports the handlers

        adapter = (
            response_adapter(type(self), self.request.method or "", status)
            if self.settings.get("nbflows_check_replies")
            else None
        )
        if adapter is not None:
            # A check only: the answer's bytes are the same with it on or off.
            try:
                adapter.validate_python(_sample(data))
            except ValidationError as err:
                # A server bug, not the caller's: answer anyway, and say it where it is seen.
                self.log.error(
                    "nbflows: the answer to %s %s does not match its declared model: %s",
                    self.request.method,
                    self.request.path,
                    err,
                )
        # NaN as null: values stored before NaN was refused must still make valid JSON.
        return to_json(data, fallback=str, inf_nan_mode="null")

    def reply_json_text(self, text: bytes | str, status: int = 200) -> None:
        """Reply with JSON already encoded (off the loop, for big answers)."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(text)

    async def reply_big_json(self, data: bytes) -> None:
        """Reply with encoded JSON of any size, sent a piece per turn of the event loop."""
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Length", str(len(data)))
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            self.write(bytes(view[start : start + CHUNK]))
            await self.flush()
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as the documented `Error` body: a message and a reason that names it."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NBFlowsError):
            self.set_status(exc.status)
            body = exc.to_json()
        else:
            phrase = responses.get(status_code, "Unknown HTTP Error")
            # Jupyter's and tornado's own refusals (401, 403, 405) come with no reason of ours.
            reason = "".join(word.capitalize() for word in phrase.replace("-", " ").split())
            message = phrase
            if isinstance(exc, web.HTTPError) and exc.log_message:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            elif status_code >= 500:
                message = "internal server error (the server log has the details)"
            body = {"message": message, "reason": reason}
            if status_code == 401:
                self.set_header("WWW-Authenticate", "token")
            if status_code == 405:
                allowed = [m.upper() for m in _METHODS if m in type(self).__dict__]
                self.set_header("Allow", ", ".join(allowed))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NBFlowsError):  # a user mistake, answered clearly: no traceback
            self.log.info("%s %s: %s", self.request.method, self.request.uri, value.message)
            return
        super().log_exception(typ, value, tb)

    def api_url(self, *parts: str) -> str:
        from urllib.parse import quote

        base = self.base_url.rstrip("/") + "/nbflows/api"
        return "/".join([base, *(quote(p, safe="") for p in parts)])


def _request_token(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


#: Lists longer than this are checked against their model by their first item only: checking
#: thousands of runs or log lines would hold the event loop (tests check whole answers).
SAMPLE_LIMIT = 100


def _sample(data: Any) -> Any:
    """`data` with each list longer than `SAMPLE_LIMIT` cut to its first item."""
    if isinstance(data, list):
        if len(data) > SAMPLE_LIMIT:
            return [_sample(data[0])]
        return [_sample(item) for item in data]
    if isinstance(data, dict):
        return {key: _sample(value) for key, value in data.items()}
    return data
