"""Notebooks deployed from URLs: `s3://bucket/reports/daily.ipynb` (or `gs://`, `abs://`) is
read through papermill's I/O handlers, `file:///srv/nb.ipynb` is a path on the server's disk
with the same rules as a plain path (inside the server's root directory).

The server reads the notebook once, at deploy, and freezes it with the deployment like any
other: a run never reads the URL again. Credentials and endpoints come from the usual variables
of the storage's SDK (for S3: `AWS_*`, `AWS_ENDPOINT_URL_S3` for an S3-compatible server).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from nbflows.errors import InvalidInput, NotFound

#: URL schemes a deployment's notebook may come from, besides a plain path. Web URLs are not
#: among them: the server would fetch whatever a deploying user names (its own network).
REMOTE_SCHEMES = ("s3", "gs", "abs")
SCHEMES = ("file", *REMOTE_SCHEMES)
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(path: str) -> bool:
    """Whether `path` is a URL (`scheme://...`) rather than a path."""
    return _URL.match(path) is not None


def notebook_url_scheme(path: str) -> str | None:
    """The scheme of a notebook URL (`s3`, `file`, ...); None for a plain path (also a Windows
    drive letter). InvalidInput for a URL of a scheme a notebook cannot come from."""
    found = _URL.match(path)
    if found is None:
        return None
    scheme = found.group(1).lower()
    try:
        urlsplit(path)
    except ValueError:  # e.g. a bracket that is no IPv6 address
        scheme = ""
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"a notebook cannot be deployed from '{path[:120]}': valid are a path on the "
            f"server, or a URL of {', '.join(s + '://' for s in SCHEMES)}"
        )
    return scheme


def local_path_of(url: str) -> str:
    """The path a `file://` URL names (`file:///srv/nb.ipynb` → `/srv/nb.ipynb`)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(f"'{url}' names another host; a file:// URL names this server's disk")
    return unquote(parts.path)


def notebook_name(url: str) -> str:
    """The notebook's file name without `.ipynb` (a whole-notebook flow is named after it)."""
    return PurePosixPath(urlsplit(url).path).stem


def read_remote_notebook(url: str) -> str:
    """The JSON text of the notebook at `url` (an `s3://`, `gs://` or `abs://` URL), read with
    papermill's I/O handler for the scheme. Blocking: call it off the event loop."""
    if not urlsplit(url).path.endswith(".ipynb"):
        raise InvalidInput(f"{url} is not a notebook: expected a .ipynb file")
    from papermill.iorw import papermill_io  # lazily: heavy, and only deploys from URLs need it

    try:
        text = papermill_io.read(url)
    except FileNotFoundError:
        raise NotFound(f"Notebook not found: {url}", path=url) from None
    except ImportError as err:
        raise InvalidInput(
            f"cannot read {url}: {err} (install the SDK papermill uses for that storage, "
            "e.g. boto3 for s3://)"
        ) from None
    except Exception as err:  # the SDKs raise their own kinds (ClientError, ...): say which
        if type(err).__name__ in ("NoSuchKey", "NoSuchBucket") or "Not Found" in str(err):
            raise NotFound(f"Notebook not found: {url}", path=url) from None
        raise InvalidInput(f"cannot read {url}: {type(err).__name__}: {err}", path=url) from None
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return str(text)
