"""Base handler: JSON in and out, domain errors mapped to HTTP codes in one place."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from typing import Any

from jupyter_server.base.handlers import APIHandler

from nbflows.errors import BadRequest, NBFlowsError
from nbflows.orchestrator import Orchestrator

#: Request bodies larger than this are decoded on the orchestrator's threads, not on the event
#: loop (a 40 MB executed notebook takes the loop's whole attention for a second otherwise).
BIG_BODY = 256 * 1024
#: Big bodies go in and out in pieces of this size, one per turn of the event loop.
CHUNK = 1024 * 1024
_UNSET = object()


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


class NBFlowsHandler(APIHandler):
    """Every nbflows route: Jupyter authentication + authorization on resource `nbflows`."""

    auth_resource = "nbflows"
    #: Decode a big JSON body on the orchestrator's threads before the method runs; a handler
    #: that reads `self.request.body` itself (off the loop) sets this to False.
    decode_body_early = True
    _body: Any = _UNSET
    _body_error: BadRequest | None = None

    @property
    def orch(self) -> Orchestrator:
        return self.settings["nbflows_orchestrator"]

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        raw = self.request.body
        # Only for a known user: nobody else gets the server to decode megabytes.
        if self.decode_body_early and len(raw) > BIG_BODY and self.current_user is not None:
            try:
                self._body = await self.orch.compute(decode_json, raw)
            except BadRequest as err:  # raised where the method asks for the body
                self._body_error = err

    def body(self) -> Any:
        if self._body_error is not None:
            raise self._body_error
        if self._body is not _UNSET:
            return self._body
        raw = self.request.body
        return decode_json(raw) if raw else {}

    def query(self, name: str, default: Any = None, cast: type = str) -> Any:
        value = self.get_query_argument(name, None)
        if value is None or value == "":
            return default
        try:
            parsed = cast(value)
        except ValueError:
            raise BadRequest(
                f"query parameter '{name}' must be {cast.__name__}, not {value!r}"
            ) from None
        if isinstance(parsed, float) and not math.isfinite(parsed):
            raise BadRequest(f"query parameter '{name}' must be a finite number, not {value!r}")
        return parsed

    def reply(self, data: Any, status: int = 200, location: str | None = None) -> None:
        self.set_status(status)
        if location:
            self.set_header("Location", location)
        if status == 204:
            self.finish()
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

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
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NBFlowsError):
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(exc.to_json(), default=str))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NBFlowsError):  # a user mistake, answered clearly: no traceback
            self.log.info("%s %s: %s", self.request.method, self.request.uri, value.message)
            return
        super().log_exception(typ, value, tb)

    def api_url(self, *parts: str) -> str:
        from urllib.parse import quote

        base = self.base_url.rstrip("/") + "/nbflows/api"
        return "/".join([base, *(quote(p, safe="") for p in parts)])
