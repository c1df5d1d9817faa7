"""What a kernel knows about where it runs: its notebook, its server, and whether a worker runs it.

Everything comes from the environment, which the kernel inherits from whoever started it:

- Jupyter (jupyter_server) sets `JPY_SESSION_NAME` to the notebook's path; VS Code instead puts
  `__vsc_ipynb_file__` into the user namespace.
- The nbflows server extension exports `NBFLOWS_API_URL` and `NBFLOWS_API_TOKEN` to the kernels
  it starts (`nbflows.client.rest.get_client` reads them, and falls back to discovering servers).
- A worker running a flow sets `NBFLOWS_FLOW_RUN_ID` (the run the kernel executes),
  `NBFLOWS_FLOW_NAME` and `NBFLOWS_RUN_KIND` (`"cell"` for a cell-flow deployment, `"notebook"`
  for a whole-notebook one). Such a kernel is *headless*: it reports through its output stream.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbflows.protocol import (
    API_TOKEN_ENV,
    API_URL_ENV,
    FLOW_NAME_ENV,
    FLOW_RUN_ID_ENV,
    RUN_KIND_ENV,
    SESSION_NAME_ENV,
)

__all__ = [
    "KernelContext",
    "current_context",
]

# VS Code's Jupyter extension names the notebook in the user namespace, not in the environment.
_VSCODE_NOTEBOOK_VAR = "__vsc_ipynb_file__"


@dataclass(frozen=True)
class KernelContext:
    """Where this kernel runs. `flow_run_id` set means a worker runs it (headless)."""

    notebook_path: str | None = None
    api_url: str | None = None
    api_token: str | None = None
    flow_run_id: str | None = None
    flow_name: str | None = None
    run_kind: str | None = None

    @property
    def headless(self) -> bool:
        """True when a worker executes this kernel for flow run `flow_run_id`."""
        return self.flow_run_id is not None

    def is_deployed_flow(self, flow_name: str) -> bool:
        """True when `%%flow flow_name` is the deployed cell flow this headless kernel runs.

        That cell *is* the worker's flow run: it reports no run of its own, and its failure
        fails the notebook (and so the run). Any other `%%flow` cell is a child run.
        """
        return self.headless and self.run_kind == "cell" and self.flow_name == flow_name


def current_context(
    user_ns: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> KernelContext:
    """The context of this kernel, read now from `environ` (default `os.environ`).

    `user_ns` (the shell's namespace) lets a VS Code kernel name its notebook.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    notebook_path = get(SESSION_NAME_ENV)
    if notebook_path is None and user_ns is not None:
        vscode_path = user_ns.get(_VSCODE_NOTEBOOK_VAR)
        notebook_path = vscode_path if isinstance(vscode_path, str) and vscode_path else None
    return KernelContext(
        notebook_path=notebook_path,
        api_url=get(API_URL_ENV),
        api_token=get(API_TOKEN_ENV),
        flow_run_id=get(FLOW_RUN_ID_ENV),
        flow_name=get(FLOW_NAME_ENV),
        run_kind=get(RUN_KIND_ENV),
    )
