"""Domain errors. Each maps to one HTTP status in one place (`nbflows.extension.base`)."""

from __future__ import annotations

from typing import Any


class NBFlowsError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    status = 400

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: a user mistake reads as one clear line.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "reason": type(self).__name__}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(NBFlowsError):
    """Malformed request: not JSON, wrong shape."""

    status = 400


class Forbidden(NBFlowsError):
    """The caller is known but may not do this (a permission or a credential's scope)."""

    status = 403


class NotFound(NBFlowsError):
    status = 404


class Conflict(NBFlowsError):
    """The thing exists already, or its current state forbids the change."""

    status = 409


class InvalidInput(NBFlowsError):
    """Well-formed but invalid: a bad cron, an unknown parameter, a job variable outside the schema."""

    status = 422


class ServiceUnavailable(NBFlowsError):
    """The server is shutting down (or its store is unreachable): try again later."""

    status = 503


class TooLarge(NBFlowsError):
    """Over a size limit of the server; the message names the limit and its setting."""

    status = 413


class NotAvailable(NBFlowsError):
    """The request is right, but this server lacks a part it needs (e.g. a browser to make
    PDF); the message says what is missing and what works instead."""

    status = 501
