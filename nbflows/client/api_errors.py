"""Errors of the REST client: the server's domain errors raised again as the same
`nbflows.errors` classes (`error_from_response`), `NoServerError` and `APIError`.
"""

from __future__ import annotations

from typing import Any

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
from nbflows.protocol import API_TOKEN_ENV, API_URL_ENV

#: Server error `reason` → the exception the client raises (the server names its class).
_REASONS: dict[str, type[NBFlowsError]] = {
    cls.__name__: cls
    for cls in (BadRequest, Forbidden, NotFound, Conflict, InvalidInput, TooLarge, NotAvailable)
}


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


def no_server_message(detail: str) -> str:
    return (
        f"{detail}. Start one with `jupyter lab` (with the nbflows extension) or `nbflows server`, "
        f"or set {API_URL_ENV} (e.g. http://127.0.0.1:8888/nbflows/api/) and {API_TOKEN_ENV}."
    )


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
