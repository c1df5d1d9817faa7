"""nbflows: notebook-native orchestration for Jupyter.

The public names are imported lazily so that `import nbflows` in a kernel stays cheap
(no tornado, no SQLAlchemy, no ipywidgets until they are used).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Flow": "nbflows.kernel_magics.flow",
    "flow": "nbflows.kernel_magics.flow",
    "deploy": "nbflows.client.deploy",
    "DeploymentImage": "nbflows.packaging.images",
    "get_client": "nbflows.client.rest",
    "run_deployment": "nbflows.client.rest",
    "CronSchedule": "nbflows.scheduling.schedules",
    "IntervalSchedule": "nbflows.scheduling.schedules",
    "RRuleSchedule": "nbflows.scheduling.schedules",
    "StateType": "nbflows.protocol",
}

_SUBMODULES = {
    "widgets": "nbflows.widgets",
    "kernel_magics": "nbflows.kernel_magics",
    "client": "nbflows.client",
    "schedules": "nbflows.scheduling.schedules",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `nbflows.widgets.pool_picker()` works after a plain `import nbflows`
        return importlib.import_module(_SUBMODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbflows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    from nbflows.kernel_magics import load_ipython_extension as load

    load(ipython)
