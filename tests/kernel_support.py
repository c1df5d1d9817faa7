"""Tests that need a Jupyter kernel other than Python's (bash_kernel, IRkernel).

`make setup` installs bash_kernel's kernelspec into .venv and `.ci/run` installs Debian's
r-cran-irkernel; on a machine without one of them its tests are skipped, except under CI
(`CI=true`), where a missing kernel is a failure, not a silent skip.
"""

from __future__ import annotations

import os

import pytest
from IPython.core.interactiveshell import InteractiveShell

#: Kernel name → how to get it.
KERNELS = {
    "bash": "pip install bash_kernel && python -m bash_kernel.install --sys-prefix (make setup)",
    "ir": "apt-get install r-cran-irkernel (.ci/run)",
}


def require_kernel(name: str) -> None:
    """Skip the test (fail it under CI) when Jupyter has no kernelspec `name`."""
    from jupyter_client.kernelspec import KernelSpecManager

    if name in KernelSpecManager().find_kernel_specs():
        return
    reason = f"no Jupyter kernel {name!r} here; install it with {KERNELS.get(name, name)}"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI=true: the kernel must be there)")
    pytest.skip(reason)


def ipython_shell() -> InteractiveShell:
    """The one test IPython shell of this process. `globalipapp.get_ipython` as imported by name
    answers None once another test module has started the shell, so ask the module each time."""
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    assert shell is not None
    return shell
