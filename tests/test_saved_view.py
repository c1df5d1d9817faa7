"""nbflows widgets carry a saved view in their display bundle: readable without the kernel
(JupyterLab's extension shows it when the widget's model is gone; other front ends show the
text/plain). The browser side: tests/journeys/test_lab_entry_points.py."""

from __future__ import annotations

import ipywidgets as widgets

from nbflows.widgets.pool_picker import PoolPicker
from nbflows.widgets.saved_view import FALLBACK_MIME, html_text, widget_text


def test_a_widget_bundle_carries_its_text_beside_the_live_view() -> None:
    picker = PoolPicker(load=False)
    picker._set_pools(
        [
            {
                "name": "night",
                "type": "process",
                "status": "READY",
                "workers_online": 1,
                "queues": [],
                "paused": False,
            }
        ]
    )
    bundle = picker._repr_mimebundle_()
    assert bundle is not None
    assert "application/vnd.jupyter.widget-view+json" in bundle
    text = bundle[FALLBACK_MIME]["text"]
    assert "Work pool: night" in text and bundle["text/plain"] == text


def test_widget_text_reads_boxes_html_and_choices() -> None:
    box = widgets.VBox(
        [
            widgets.HBox([widgets.Label("State:"), widgets.HTML("<b>COMPLETED</b>")]),
            widgets.HTML("<style>.x{}</style><div>line 1</div><div>line&nbsp;2</div>"),
            widgets.Dropdown(description="Pool", options=["a", "b"], value="b"),
            widgets.Button(description="Refresh"),
            widgets.Checkbox(description="push", value=True),
        ]
    )
    assert widget_text(box) == "State:  COMPLETED\nline 1\nline 2\nPool: b\n[x] push"
    assert html_text("<table><tr><td>a</td><td>b</td></tr></table>") == "a b"
