"""Size limits of what the server takes and keeps, and how each is enforced when hit.

Each limit is a setting of the server extension (`NBFlowsExtension.<name>`, e.g.
`--NBFlowsExtension.max_body_size=...`); a refusal or a cut says which limit it hit and its name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nbflows.errors import TooLarge

MiB = 1024 * 1024


def _limit(default: int, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Limits:
    max_body_size: int = _limit(
        64 * MiB,
        "Bytes of one request body; a larger body is refused (413) without being kept in memory.",
    )
    max_parameters_size: int = _limit(
        1 * MiB,
        "Bytes of a request's `parameters` as JSON (deploy, run, interactive run); larger is "
        "refused (413).",
    )
    max_notebook_size: int = _limit(
        16 * MiB,
        "Bytes of a notebook as JSON: a larger notebook is refused at deploy (413); an executed "
        "notebook has its largest outputs replaced by a note saying so until it fits.",
    )
    max_log_line: int = _limit(
        64 * 1024,
        "Characters of one log line; a longer line is cut, and the cut is said at its end.",
    )
    max_run_output: int = _limit(
        16 * MiB,
        "Characters of log text kept per run; later lines are dropped after a line saying so.",
    )

    max_artifact_size: int = _limit(
        64 * MiB,
        "Bytes of one artifact (a file a run writes under NBFLOWS_OUTPUT_DIR); a larger one is "
        "not kept, and the run's log says so (it cannot exceed max_body_size either).",
    )
    max_run_artifacts: int = _limit(
        256 * MiB,
        "Bytes of all the artifacts of one run; artifacts past it are not kept, and the run's "
        "log says so.",
    )

    max_project_size: int = _limit(
        256 * MiB,
        "Bytes of the project folder a process-pool deployment carries for remote workers "
        "(the files beside its notebook); a larger one is refused at deploy (413).",
    )

    def as_json(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def help(name: str) -> str:
        return str(next(f for f in fields(Limits) if f.name == name).metadata["help"])

    @staticmethod
    def default(name: str) -> int:
        return int(getattr(Limits(), name))


def setting(name: str) -> str:
    """How a user changes limit `name`: the server extension's option of that name."""
    return f"NBFlowsExtension.{name}"


def size_text(size: int) -> str:
    """`size` bytes for people: `512 bytes`, `64 KiB`, `1.5 MiB`."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def too_large(what: str, size: int, limits: Limits, name: str) -> TooLarge:
    limit = getattr(limits, name)
    return TooLarge(
        f"{what} is {size_text(size)}; this server takes at most {size_text(limit)} "
        f"({limit} bytes, setting {setting(name)})",
        limit=limit,
        setting=setting(name),
    )


def check_parameters(parameters: Any, limits: Limits) -> None:
    """Refuse `parameters` whose JSON is larger than `max_parameters_size`."""
    size = len(json.dumps(parameters))
    if size > limits.max_parameters_size:
        raise too_large("'parameters'", size, limits, "max_parameters_size")


def cut_line(message: str, limits: Limits) -> str:
    """`message`, cut to `max_log_line` characters with a note saying how much was left out."""
    limit = limits.max_log_line
    if len(message) <= limit:
        return message
    return (
        f"{message[:limit]} … [cut: {len(message) - limit} more characters; log lines are kept "
        f"up to {limit} characters, setting {setting('max_log_line')}]"
    )


def run_output_note(limits: Limits) -> str:
    return (
        f"output limit of {limits.max_run_output} characters reached (setting "
        f"{setting('max_run_output')}); later lines of this run are dropped"
    )


def executed_notebook_text(nb: dict[str, Any], limits: Limits) -> str:
    """The executed notebook as stored: JSON of at most `max_notebook_size` bytes.

    When it is larger, its largest outputs are left out, largest first, each replaced where it
    was by a stream output saying what was cut and why, until it fits. A notebook too large even
    without those outputs is refused (413).
    """
    text = json.dumps(nb)
    limit = limits.max_notebook_size
    if len(text) <= limit:
        return text
    outputs = [
        (len(json.dumps(output)), cell_outputs, i)
        for cell in nb.get("cells") or []
        if isinstance(cell, dict) and isinstance(cell_outputs := cell.get("outputs"), list)
        for i, output in enumerate(cell_outputs)
    ]
    excess = len(text) - limit
    for size, cell_outputs, i in sorted(outputs, key=lambda item: -item[0]):
        note = _cut_output_note(size, limits)
        saved = size - len(json.dumps(note))
        if saved <= 0:
            break
        cell_outputs[i] = note
        excess -= saved
        if excess <= 0:
            return json.dumps(nb)
    raise too_large(
        "the executed notebook, without its largest outputs,",
        len(json.dumps(nb)),
        limits,
        "max_notebook_size",
    )


def _cut_output_note(size: int, limits: Limits) -> dict[str, Any]:
    return {
        "output_type": "stream",
        "name": "stderr",
        "text": (
            f"[nbflows] an output of {size_text(size)} was cut here: executed notebooks are kept "
            f"up to {size_text(limits.max_notebook_size)} (setting "
            f"{setting('max_notebook_size')})\n"
        ),
    }
