"""The `nbflows` command line, also the process of a worker (`nbflows worker start`)."""

from __future__ import annotations

import sys

# jsonschema, which nbformat imports, imports rfc3987_syntax when it is installed (jupyter-events
# depends on it) to check the "iri" string format: it builds a grammar on import, about 1 s of
# CPU and 20 MiB that every command and every worker would keep. No schema nbflows validates has
# that format, so these processes go without it (one that imported it already keeps it).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: not importable
