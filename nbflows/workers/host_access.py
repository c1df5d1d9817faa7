"""Host access of a docker pool's job configuration: host paths, privileged containers and the
host's network are refused (`check_host_access`) unless the pool's administrator allows them with
hard-coded job_configuration keys (`allowed_host_paths`, `allow_privileged`,
`allow_host_network`). The server checks at deploy and run time; the worker again before it
creates a container.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import Any

from nbflows.errors import InvalidInput
from nbflows.workers.placeholders import PLACEHOLDER, placeholders

__all__ = ["HOST_ACCESS_KEYS", "check_host_access", "host_access_problems"]

#: job_configuration keys by which a pool's administrator allows what is refused by default:
#: bind mounts of host paths at or under `allowed_host_paths` (a list of absolute paths; the
#: Docker socket only when listed itself), privileged containers, the host's network. Only
#: hard-coded values count, so that no deployment can grant itself access to the host.
HOST_ACCESS_KEYS = ("allowed_host_paths", "allow_privileged", "allow_host_network")
_DOCKER_SOCKETS = ("docker.sock", "containerd.sock", "podman.sock")
# A Docker volume name; any other source of a mount is a path of the host.
_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_host_access(
    configuration: Mapping[str, Any],
    *,
    template: Mapping[str, Any] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> None:
    """Raise InvalidInput (422) naming each way `configuration` (a rendered job configuration)
    reaches into the host that its pool does not allow (see `host_access_problems`)."""
    problems = host_access_problems(configuration, template=template, resolve=resolve)
    if problems:
        raise InvalidInput("; ".join(problems), problems=problems)


def host_access_problems(
    configuration: Mapping[str, Any],
    *,
    template: Mapping[str, Any] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> list[str]:
    """What `configuration` asks of the host beyond what its `HOST_ACCESS_KEYS` allow: bind
    mounts of host paths (`volumes`), `privileged`, and a `network_mode` of `host` (or another
    container's network). Each problem names the job variable (from `template`'s placeholders,
    else the configuration key) and what is allowed.

    Paths are judged as written (normalized, `..` resolved); `resolve` (the worker, on the
    engine's machine: `os.path.realpath`) also judges where symbolic links lead.
    """
    written = [posixpath.normpath(str(p)) for p in configuration.get("allowed_host_paths") or []]
    allowed = written + ([resolve(p) for p in written] if resolve is not None else [])
    problems: list[str] = []

    def variable(key: str) -> str:
        value = ((template or {}).get("job_configuration") or {}).get(key)
        whole = PLACEHOLDER.fullmatch(value) if isinstance(value, str) else None
        return f"job variable {(whole.group(1) if whole else key)!r}"

    for mount in configuration.get("volumes") or []:
        source = str(mount).split(":", 1)[0]
        if _VOLUME_NAME.fullmatch(source):
            continue  # a named volume, not a path of the host
        why = _host_path_refusal(source, allowed, resolve)
        if why:
            problems.append(
                f"{variable('volumes')} mounts {why}; allowed: named volumes"
                + (f" and host paths under {', '.join(written)}" if written else "")
                + " (a pool administrator allows host paths with 'allowed_host_paths' in the "
                "job_configuration of the pool's base job template)"
            )
    if configuration.get("privileged") and configuration.get("allow_privileged") is not True:
        problems.append(
            f"{variable('privileged')} is true: a privileged container controls the host; "
            "allowed: false (a pool administrator allows it with 'allow_privileged': true in "
            "the job_configuration of the pool's base job template)"
        )
    network = str(configuration.get("network_mode") or "")
    shares = network == "host" or network.startswith("container:")
    if shares and configuration.get("allow_host_network") is not True:
        problems.append(
            f"{variable('network_mode')} is {network!r}: it shares "
            + ("the host's network" if network == "host" else "another container's network")
            + "; allowed: null (Docker's default), 'bridge', 'none' or a network's name (a pool "
            "administrator allows it with 'allow_host_network': true in the job_configuration "
            "of the pool's base job template)"
        )
    return problems


def _host_path_refusal(
    source: str, allowed: list[str], resolve: Callable[[str], str] | None
) -> str | None:
    """Why the host path `source` may not be mounted under `allowed`; None when it may."""
    if not source.startswith("/"):
        return f"{source!r}, which is neither a volume name nor an absolute path of the host"
    candidates = [posixpath.normpath(source)]
    if resolve is not None:
        candidates.append(resolve(candidates[0]))
    for path in candidates:
        socket_like = posixpath.basename(path) in _DOCKER_SOCKETS
        inside = any(
            path == root or (not socket_like and path.startswith(root.rstrip("/") + "/"))
            for root in allowed
        )
        if not inside:
            where = f" (a link to {path})" if path != candidates[0] else ""
            what = "the container engine's socket" if socket_like else "the host path"
            return f"{what} {candidates[0]!r}{where}"
    return None


def check_host_access_keys(configuration: Mapping[str, Any]) -> None:
    """`HOST_ACCESS_KEYS` must be hard-coded and of their type: a placeholder would let a
    deployment grant itself access to the host."""
    for key in HOST_ACCESS_KEYS:
        if key not in configuration:
            continue
        value = configuration[key]
        if any(placeholders(value, key)):
            raise InvalidInput(
                f"job_configuration.{key} must be hard-coded in the base job template, not a "
                "placeholder: a deployment must not be able to grant itself access to the host"
            )
        if key == "allowed_host_paths":
            if not isinstance(value, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in value
            ):
                raise InvalidInput(
                    "job_configuration.allowed_host_paths must be a list of absolute paths of "
                    'the host, e.g. ["/srv/data"]'
                )
        elif not isinstance(value, bool):
            raise InvalidInput(f"job_configuration.{key} must be true or false, not {value!r}")
