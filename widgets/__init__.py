"""Notebook widgets of nbflows: pool picker, deploy form, live run logs, run history.

    import nbflows.widgets
    pool = nbflows.widgets.pool_picker()          # .value is the chosen pool's name
    nbflows.widgets.deploy_form(my_flow)          # or a notebook path, to deploy it whole
    nbflows.widgets.run_logs(run)                 # live state and log lines of a run
    nbflows.widgets.run_history("my_flow")        # recent runs and a duration timeline

They talk to the server only through `nbflows.client.rest` (the server is found as `get_client()`
finds it, or pass `client=`). When no server answers they say so instead of raising.
"""

from __future__ import annotations

# Binding each factory by name after its module is imported makes the package attribute the
# function, not the submodule of the same name.
from nbflows.widgets.deploy_form import DeployForm, deploy_form
from nbflows.widgets.pool_picker import PoolPicker, pool_picker
from nbflows.widgets.run_history import RunHistory, run_history
from nbflows.widgets.run_logs import RunLogs, run_logs

__all__ = [
    "DeployForm",
    "PoolPicker",
    "RunHistory",
    "RunLogs",
    "deploy_form",
    "pool_picker",
    "run_history",
    "run_logs",
]
