"""The saved view of nbflows' widgets: readable without their kernel.

A widget's output holds only a reference to a model that lives in the kernel: after a restart,
or when the saved notebook is opened again, JupyterLab says "Error displaying widget: model not
found". nbflows' widgets add to their display bundle `application/vnd.nbflows.widget+json`
(`{"text": ...}`, what the widget shows, as text) and use that text as `text/plain` too. The
JupyterLab extension renders that MIME type: the live widget while its model exists, the text
otherwise (and it keeps the text current while the widget is live). Other front ends show the
text/plain.
"""

from __future__ import annotations

import html
import re
from typing import Any

import ipywidgets as widgets

__all__ = ["FALLBACK_MIME", "SavedView", "widget_text"]

FALLBACK_MIME = "application/vnd.nbflows.widget+json"

_HIDDEN = re.compile(r"<(style|script)\b.*?</\1\s*>", re.S | re.I)
_BREAK = re.compile(r"<(br|/div|/p|/tr|/li|/h[1-6]|/table)\b[^>]*>", re.I)
_CELL = re.compile(r"</t[dh]\s*>", re.I)
_TAG = re.compile(r"<[^>]+>")


def html_text(markup: str) -> str:
    """The text of an HTML fragment, a line for each block."""
    text = _HIDDEN.sub("", markup)
    text = _CELL.sub("  ", _BREAK.sub("\n", text))
    text = html.unescape(_TAG.sub("", text))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def widget_text(widget: Any) -> str:
    """What `widget` shows, as text (its children's, one under the other)."""
    if isinstance(widget, widgets.Box):
        parts = [widget_text(child) for child in widget.children]
        sep = "  " if isinstance(widget, widgets.HBox) else "\n"
        return sep.join(p for p in parts if p)
    if isinstance(widget, widgets.Output):
        return "\n".join(_output_text(output) for output in widget.outputs).strip()
    if isinstance(widget, widgets.Button):
        return ""  # an action, not something shown
    description = str(getattr(widget, "description", "") or "")
    if isinstance(widget, widgets.HTML | widgets.HTMLMath):
        value = html_text(str(widget.value))
    elif isinstance(widget, widgets.Checkbox):
        return f"[{'x' if widget.value else ' '}] {description}".strip()
    elif hasattr(widget, "label") and isinstance(getattr(widget, "label", None), str):
        value = widget.label  # a selection: the chosen option's label
    elif isinstance(getattr(widget, "value", None), str | int | float):
        value = str(widget.value)
    else:
        value = ""
    return f"{description}: {value}" if description and value else value or description


def _output_text(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data") or {}
    if "text/plain" in data:
        return str(data["text/plain"])
    if "text/html" in data:
        return html_text(str(data["text/html"]))
    return ""


class SavedView:
    """Mixin (before the ipywidgets base): the display bundle carries the saved view."""

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if not bundle:
            return bundle
        text = widget_text(self) or type(self).__name__
        bundle[FALLBACK_MIME] = {"text": text}
        bundle["text/plain"] = text
        return bundle
