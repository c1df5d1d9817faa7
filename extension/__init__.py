"""nbflows' Jupyter server extension (imported as `nbflows.extension`)."""

from __future__ import annotations

from typing import Any

from nbflows.extension.app import NBFlowsExtension

__all__ = ["NBFlowsExtension"]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbflows.extension", "app": NBFlowsExtension}]
