"""Finding a server: the running Jupyter servers of this user (`discover_servers`, from their
runtime files) and the API root of a URL (`api_root`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

API_PATH = "nbflows/api/"


class ServerInfo(dict[str, Any]):
    """One running Jupyter server, as read from its `jpserver-<pid>.json` runtime file."""

    @property
    def api_url(self) -> str:
        return ensure_slash(str(self["url"])) + API_PATH


def ensure_slash(url: str) -> str:
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
    url = ensure_slash(url.strip())
    if urlsplit(url).path.rstrip("/").endswith("/api"):
        return url
    return url + API_PATH


def same_server(a: str, b: str) -> bool:
    def key(url: str) -> tuple[str, int | None, str]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            host = "localhost"
        return host, parts.port, ensure_slash(parts.path)

    return key(a) == key(b)
