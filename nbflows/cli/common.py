"""Helpers shared by the command groups: the client of the current invocation, JSON options."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from nbflows.client.rest import Client, get_client
from nbflows.errors import InvalidInput


class _Invocation:
    """The global options of the running command, and its client once made."""

    url: str | None = None
    token: str | None = None
    client: Client | None = None


_current = _Invocation()


def configure(url: str | None, token: str | None) -> None:
    """Called by the root command with `--url`/`--token` (or their environment variables)."""
    close()
    _current.url = url
    _current.token = token


def client() -> Client:
    """The client for this invocation, from the global `--url`/`--token` (or discovery).

    Created on first use, so that `--help` and `nbflows server` work without a server.
    """
    if _current.client is None:
        _current.client = get_client(url=_current.url, token=_current.token)
    return _current.client


def use_token(token: str) -> None:
    """Send `token` instead of the global one (a worker's own credential)."""
    close()
    _current.token = token


def close() -> None:
    """Close the client of the invocation, if one was made."""
    if _current.client is not None:
        _current.client.close()
        _current.client = None


def parse_json_object(text: str | None, option: str) -> dict[str, Any]:
    """A JSON object given on the command line (e.g. `--params '{"a": 1}'`); {} for none."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{option} must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


def read_json_file(path: str, option: str) -> Any:
    """The JSON content of a file (`-` reads stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{option}: cannot read '{path}': {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{option}: '{path}' is not valid JSON: {exc}") from exc


def confirm(question: str, yes: bool) -> None:
    """Ask before destroying something, when a person is at the terminal and did not say --yes."""
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
