"""The job variables of `dask` pools: the JSON schema their default base job template is made of.

A pool's administrator pins what must not change (say the scheduler address) by hard-coding it in
the pool's base job template; deployments and runs override the rest within this schema, as on
any pool (`nbflows.workers.job_templates`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DASK_VARIABLES", "MEMORY_RESOURCE"]

#: The Dask resource the `memory` job variable asks for, in bytes: start the Dask workers with
#: `--resources MEMORY=<bytes>` for it to be honoured (Dask's own convention).
MEMORY_RESOURCE = "MEMORY"

_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}

DASK_VARIABLES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "scheduler_address": {
            "title": "Scheduler address",
            "description": "Address of the Dask scheduler, e.g. 'tcp://10.0.0.5:8786' (what "
            "dask-jobqueue, dask-kubernetes or `dask scheduler` print); null = the worker's "
            "Dask configuration (DASK_SCHEDULER_ADDRESS). Not used with a dask-gateway cluster.",
            "type": ["string", "null"],
            "default": None,
        },
        "gateway_address": {
            "title": "dask-gateway address",
            "description": "URL of a dask-gateway server; the run goes to its cluster "
            "'gateway_cluster' (needs the dask-gateway package on the worker).",
            "type": ["string", "null"],
            "default": None,
        },
        "gateway_cluster": {
            "title": "dask-gateway cluster",
            "description": "Name of the running dask-gateway cluster to connect to.",
            "type": ["string", "null"],
            "default": None,
        },
        "gateway_auth": {
            "title": "dask-gateway auth",
            "description": "dask-gateway authentication: 'kerberos', 'jupyterhub' or 'basic' "
            "(its credentials come from the worker's environment, never from here); null = "
            "dask-gateway's configuration.",
            "type": ["string", "null"],
            "enum": ["kerberos", "jupyterhub", "basic", None],
            "default": None,
        },
        "tls_ca_file": {
            "title": "TLS CA file",
            "description": "CA certificate (a path on the worker's machine) of a 'tls://' "
            "scheduler; with tls_client_cert and tls_client_key.",
            "type": ["string", "null"],
            "default": None,
        },
        "tls_client_cert": {
            "title": "TLS client certificate",
            "description": "Client certificate file (a path on the worker's machine).",
            "type": ["string", "null"],
            "default": None,
        },
        "tls_client_key": {
            "title": "TLS client key",
            "description": "Client key file (a path on the worker's machine).",
            "type": ["string", "null"],
            "default": None,
        },
        "resources": {
            "title": "Dask resources",
            "description": "Abstract resources each run holds on its Dask worker, e.g. "
            '{"GPU": 1}: it runs only on workers started with at least as much '
            "(`dask worker --resources GPU=1`).",
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
            "default": {},
        },
        "memory": {
            "title": "Memory",
            "description": "Memory a run needs, such as '2GiB' or '500MB': held as the Dask "
            f"resource {MEMORY_RESOURCE} (in bytes), so start the workers with "
            f"`--resources {MEMORY_RESOURCE}=<bytes>`; null = not asked for.",
            "type": ["string", "null"],
            "pattern": "^[0-9.]+ *([kMGT]i?B|B)?$",
            "default": None,
        },
        "env": {
            "title": "Environment variables",
            "description": "Extra environment variables of the run's kernel on the Dask worker, "
            "merged key by key over the pool's and the deployment's.",
            **_STRING_MAP,
            "default": {},
        },
        "kernel_name": {
            "title": "Kernel name",
            "description": "Jupyter kernel spec (installed on the Dask workers) to run the "
            "notebook with; null = the notebook's own kernel spec.",
            "type": ["string", "null"],
            "default": None,
        },
        "project_files": {
            "title": "Send project files",
            "description": "Send the deployment's project folder (what an image build would "
            "hold) with each run, so relative paths work on the Dask worker; false = the "
            "notebook only.",
            "type": "boolean",
            "default": True,
        },
        "connect_timeout": {
            "title": "Connect timeout (seconds)",
            "description": "How long to try to reach the scheduler before the run fails.",
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 10,
        },
        "timeout": {
            "title": "Timeout (seconds)",
            "description": "Seconds after which the run is stopped and marked failed; null = "
            "no timeout.",
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "default": None,
        },
        "stream_output": {
            "title": "Stream output",
            "description": "Relay the run's output to its log as it happens.",
            "type": "boolean",
            "default": True,
        },
    },
}
