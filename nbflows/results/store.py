"""`ResultStore`: bytes by key under one fsspec URL.

Every call does blocking I/O (disk or network): call it from the orchestrator's threads or a
worker, never on the server's event loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbflows.errors import InvalidInput, NotFound

#: The store's URL (a folder path, `file://...`, `s3://bucket/prefix`, any fsspec URL).
URL_ENV = "NBFLOWS_RESULT_STORE_URL"
#: fsspec storage options as a JSON object, e.g. `{"endpoint_url": "http://127.0.0.1:9000"}`
#: for an S3-compatible server; credentials are best left to the usual AWS_* variables.
OPTIONS_ENV = "NBFLOWS_RESULT_STORE_OPTIONS"


def default_result_store_url() -> str:
    """`NBFLOWS_RESULT_STORE_URL`, else the folder `nbflows/results` under the Jupyter data dir."""
    url = os.environ.get(URL_ENV, "").strip()
    if url:
        return url
    from jupyter_core.paths import jupyter_data_dir

    return str(Path(jupyter_data_dir()) / "nbflows" / "results")


def default_result_store_options() -> dict[str, Any]:
    text = os.environ.get(OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        options = json.loads(text)
    except ValueError as err:
        raise InvalidInput(f"{OPTIONS_ENV} must be a JSON object: {err}") from None
    if not isinstance(options, dict):
        raise InvalidInput(f"{OPTIONS_ENV} must be a JSON object, not {text!r}")
    return options


@dataclass(frozen=True)
class StoredFile:
    """What the database keeps of a stored file."""

    key: str
    size: int
    sha256: str


class ResultStore:
    """Bytes by key (`runs/<run id>/notebook.ipynb`, ...) under `url`."""

    def __init__(self, url: str | None = None, options: dict[str, Any] | None = None) -> None:
        import fsspec  # lazily: only servers and workers that store files need it

        self.url = (url or default_result_store_url()).rstrip("/")
        options = dict(default_result_store_options() if options is None else options)
        protocol = fsspec.core.split_protocol(self.url)[0] or "file"
        if protocol in ("file", "local"):
            options.setdefault("auto_mkdir", True)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **options)
        except (ImportError, ValueError) as err:
            raise InvalidInput(f"result store '{self.url}' cannot be used: {err}") from None
        self.local = protocol in ("file", "local")
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"ResultStore({self.url!r})"

    def _path(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"'{key}' is not a valid result-store key (a relative path)")
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> StoredFile:
        """Store `data` at `key` (replacing what was there)."""
        self.fs.pipe_file(self._path(key), data)
        return StoredFile(key, len(data), hashlib.sha256(data).hexdigest())

    def get(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self._path(key)))
        except FileNotFoundError:
            raise NotFound(f"'{key}' is missing from the result store {self.url}") from None

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete(self, key: str) -> None:
        """Remove `key`, a file or a folder with everything under it (nothing if missing)."""
        path = self._path(key)
        try:
            if self.fs.isdir(path):
                self.fs.rm(path, recursive=True)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        if self.local:
            self._prune_empty_parents(path)

    def _prune_empty_parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        root = os.path.normpath(self.root)
        while os.path.normpath(parent).startswith(root + os.sep):
            try:
                os.rmdir(parent)
            except OSError:
                return
            parent = os.path.dirname(parent)
