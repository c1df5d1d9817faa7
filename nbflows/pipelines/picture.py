"""The DAG of a pipeline run as an SVG picture, each step coloured by its live state.

Drawn from `nbflows.pipelines.graph.pipeline_graph` output, in pure Python (no JavaScript, no
graphviz): steps are placed in columns by their depth in the DAG, a fanned-out step shows one
small box per item. The dashboard serves it as is; the notebook widget shows it in an HTML widget.
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["STATE_COLOURS", "render_svg"]

STATE_COLOURS = {
    "WAITING": "#e5e7eb",
    "SCHEDULED": "#dbeafe",
    "PENDING": "#bfdbfe",
    "RUNNING": "#93c5fd",
    "COMPLETED": "#86efac",
    "FAILED": "#fca5a5",
    "CRASHED": "#f87171",
    "CANCELLING": "#fde68a",
    "CANCELLED": "#d1d5db",
    "PAUSED": "#fde68a",
    "SKIPPED": "#f3f4f6",
}

_W, _H, _GAP_X, _GAP_Y, _ITEM_H = 190, 46, 70, 26, 20


def render_svg(graph: dict[str, Any]) -> str:
    """An SVG document of `graph` (see `pipeline_graph`)."""
    steps = [s["name"] for s in graph["steps"]]
    deps: dict[str, list[str]] = {name: [] for name in steps}
    for up, down in graph["edges"]:
        deps[down].append(up)
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        if name not in depth:
            depth[name] = 1 + max((depth_of(u) for u in deps[name]), default=-1)
        return depth[name]

    for name in steps:
        depth_of(name)
    items: dict[str, list[dict[str, Any]]] = {name: [] for name in steps}
    for sr in graph["step_runs"]:
        items[sr["step"]].append(sr)
    columns: dict[int, list[str]] = {}
    for name in steps:
        columns.setdefault(depth[name], []).append(name)
    box: dict[str, tuple[int, int, int]] = {}
    height = 0
    for col, names in columns.items():
        y = 20
        for name in names:
            h = _H + (_ITEM_H * len(items[name]) if len(items[name]) > 1 else 0)
            box[name] = (20 + col * (_W + _GAP_X), y, h)
            y += h + _GAP_Y
        height = max(height, y)
    width = 40 + len(columns) * (_W + _GAP_X) - _GAP_X
    run = graph.get("flow_run") or {}
    title = f"{run.get('flow_name', 'pipeline')} · {run.get('name', '')} · {(run.get('state') or {}).get('type', '')}"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbflows-dag" width="{width}" '
        f'height="{height + 30}" viewBox="0 0 {width} {height + 30}" '
        'font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>',
    ]
    for up, down in graph["edges"]:
        x1, y1, h1 = box[up]
        x2, y2, _ = box[down]
        parts.append(
            f'<line x1="{x1 + _W}" y1="{y1 + h1 // 2}" x2="{x2}" y2="{y2 + _H // 2}" '
            'stroke="#6b7280" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for name in steps:
        x, y, h = box[name]
        runs = items[name]
        state = _overall(runs)
        parts.append(
            f'<g class="step" data-step="{escape(name)}" data-state="{state}">'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{h}" rx="6" '
            f'fill="{STATE_COLOURS.get(state, "#fff")}" stroke="#374151"/>'
            f'<text x="{x + 8}" y="{y + 18}" font-weight="bold">{escape(name)}</text>'
            f'<text x="{x + 8}" y="{y + 36}" fill="#374151">{escape(state.lower())}</text>'
        )
        if len(runs) > 1:
            for i, sr in enumerate(runs):
                iy = y + _H + i * _ITEM_H - 6
                parts.append(
                    f'<rect x="{x + 8}" y="{iy}" width="{_W - 16}" height="{_ITEM_H - 4}" rx="3" '
                    f'fill="{STATE_COLOURS.get(sr["state"], "#fff")}" stroke="#9ca3af" '
                    f'data-state="{sr["state"]}"/>'
                    f'<text x="{x + 12}" y="{iy + 12}" font-size="10">'
                    f"{escape(_short(sr['label'], 30))} · {escape(sr['state'].lower())}</text>"
                )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _overall(runs: list[dict[str, Any]]) -> str:
    """One state for a step from those of its items: the most telling one first."""
    states = [r["state"] for r in runs]
    for state in ("FAILED", "CRASHED", "RUNNING", "PENDING", "SCHEDULED", "CANCELLED"):
        if state in states:
            return state
    if states and all(s == states[0] for s in states):
        return states[0]
    return "RUNNING" if "COMPLETED" in states else (states[0] if states else "WAITING")


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
