"""How the CLI shows things: rich tables for people, raw JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


class Output(str, Enum):
    table = "table"
    json = "json"


OUTPUT_OPTION = typer.Option(
    Output.table, "--output", "-o", help="table for people, json for scripts.", case_sensitive=False
)

STATE_STYLES = {
    "SCHEDULED": "yellow",
    "PENDING": "grey62",
    "RUNNING": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "bold red",
    "CANCELLING": "magenta",
    "CANCELLED": "grey50",
    "PAUSED": "magenta",
}

LEVEL_STYLES = {10: "grey50", 20: "", 30: "yellow", 40: "red", 50: "bold red"}

# Terminal escape sequences (CSI, OSC, and two-character ones), then any other control character
# but newline and tab: text from the server (run names, log lines, outputs) is shown, never obeyed.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -~]?|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: Any) -> str:
    """`value` as text safe to print on a terminal: no escape sequences or control characters
    (newlines and tabs stay)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", str(value)))


def text(value: Any, style: str = "") -> Text:
    """`value` as rich Text, cleaned (see `clean`)."""
    return Text(clean(value), style=style)


def echo(line: str) -> None:
    """Print one plain line (a worker's), cleaned."""
    print(clean(line), flush=True)


def print_json(data: Any) -> None:
    """Raw JSON on stdout, no colour or wrapping, so that scripts can parse it."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def success(message: str) -> None:
    console.print(f"[green]{clean(message)}[/]", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    console.print(clean(message), highlight=False, soft_wrap=True)


def error(message: str) -> None:
    """One red line on stderr (the message is not interpreted as markup)."""
    err_console.print(
        Text("Error: ", style="bold red") + text(message, style="red"), soft_wrap=True
    )


def fmt_time(value: Any) -> str:
    """An ISO 8601 UTC timestamp as local `YYYY-MM-DD HH:MM:SS`; '' for none."""
    if not value:
        return ""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def fmt_time_short(value: Any) -> str:
    """Like `fmt_time`, without the year when it is this year (for narrow tables)."""
    text = fmt_time(value)
    if len(text) == 19 and text[:4] == str(datetime.now().year):
        return text[5:]
    return text


def fmt_duration(seconds: Any) -> str:
    if seconds is None or seconds == "":
        return ""
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if total < 60:
        return f"{total:.1f}s" if total < 10 else f"{total:.0f}s"
    minutes, secs = divmod(round(total), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def state_text(state: Mapping[str, Any] | None) -> Text:
    """A run's state as coloured text: the name, and the type when the name differs."""
    state = state or {}
    kind = str(state.get("type") or "")
    name = str(state.get("name") or kind.title())
    label = name if name.upper() == kind else f"{name} ({kind})"
    return text(label, style=STATE_STYLES.get(kind, ""))


def fmt_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str) if value else ""
    return str(value)


def schedule_text(schedule: Mapping[str, Any]) -> str:
    """A deployment's schedule as the API returns it, in words (the schedule's own `describe`)."""
    from nbflows.scheduling.schedules import parse_schedule

    return parse_schedule(schedule).describe()


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[Column],
    *,
    title: str | None = None,
    empty: str = "Nothing to show.",
    keep: Collection[str] = ("ID",),
) -> None:
    """Print `rows` as a rich table; each column is (header, row → str | Text).

    In a narrow terminal, values wrap onto more lines rather than being cut, except in the
    columns named in `keep` (ids people copy), which are never broken.
    """
    rows = list(rows)
    if not rows:
        info(f"[dim]{escape(empty)}[/]")
        return
    out = Table(title=text(title) if title else None, title_justify="left", header_style="bold")
    for header, _ in columns:
        if header in keep:
            out.add_column(header, no_wrap=True, overflow="ignore")
        else:
            out.add_column(header, overflow="fold")
    for row in rows:
        cells: list[Text] = []
        for _, get in columns:
            value = get(row)
            cells.append(value if isinstance(value, Text) else text(fmt_value(value)))
        out.add_row(*cells)
    _wide_when_piped().print(out)


def _wide_when_piped() -> Console:
    """The console for tables: piped into another program, rows are not cut to 80 columns."""
    if console.is_terminal:
        return console
    return Console(width=1000, color_system=None if console.no_color else "auto")


def details(data: Mapping[str, Any], fields: Sequence[str], *, title: str | None = None) -> None:
    """Print chosen fields of one object as a two-column key/value table."""
    out = Table(
        title=text(title) if title else None,
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 2),
    )
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for field in fields:
        if field not in data:
            continue
        value = data[field]
        if field == "state" and isinstance(value, Mapping):
            cell: Text = state_text(value)
            if value.get("message"):
                cell = cell + text(f" — {value['message']}")
        elif field in ("created", "updated", "start_time", "end_time", "expected_start_time"):
            cell = text(fmt_time(value))
        elif field in ("duration", "retry_delay") and value is not None:
            cell = text(fmt_duration(value))
        else:
            cell = text(fmt_value(value))
        out.add_row(field.replace("_", " "), cell)
    console.print(out)


def log_line(line: Mapping[str, Any], *, with_time: bool = True) -> None:
    """One log line as `HH:MM:SS | LEVEL | message`, coloured by level."""
    level = line.get("level") or 20
    try:
        level_no = int(level)
    except (TypeError, ValueError):
        level_no = 20
    names = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
    name = names.get(level_no, str(level))
    stamp = fmt_time(line.get("timestamp"))[11:] if with_time else ""
    style = LEVEL_STYLES.get(level_no, "")
    message = str(line.get("message", "")).rstrip("\n")
    prefix = text(f"{stamp} | {name:<7} | " if stamp else f"{name:<7} | ", style="dim")
    console.print(prefix + text(message, style=style), soft_wrap=True, highlight=False)


def notebook(nb: Mapping[str, Any], *, outputs: bool = True) -> None:
    """A notebook as text: each cell's source (highlighted) and, optionally, its text outputs."""
    from rich.panel import Panel
    from rich.syntax import Syntax

    language = str(((nb.get("metadata") or {}).get("kernelspec") or {}).get("language") or "python")
    cells = nb.get("cells") or []
    if not cells:
        info("[dim]The notebook has no cells.[/]")
        return
    count = 0
    for index, cell in enumerate(cells):
        source = cell.get("source") or ""
        if isinstance(source, list):
            source = "".join(source)
        source = clean(source)
        kind = cell.get("cell_type")
        tags = (cell.get("metadata") or {}).get("tags") or []
        label = clean(
            f"[{index}] {kind}" + (f"  tags: {', '.join(map(str, tags))}" if tags else "")
        )
        if kind == "code":
            count += 1
            body: Any = Syntax(source, language, word_wrap=True)
        else:
            body = Text(source)
        console.print(Panel(body, title=escape(label), title_align="left", border_style="dim"))
        if outputs and kind == "code":
            for item in cell.get("outputs") or []:
                shown = _output_text(item)
                if shown:
                    style = "red" if item.get("output_type") == "error" else ""
                    console.print(text(shown.rstrip("\n"), style=style), soft_wrap=True)


def _output_text(item: Mapping[str, Any]) -> str:
    kind = item.get("output_type")
    if kind == "stream":
        text = item.get("text") or ""
        return "".join(text) if isinstance(text, list) else str(text)
    if kind == "error":
        lines = item.get("traceback") or [f"{item.get('ename')}: {item.get('evalue')}"]
        return "\n".join(str(line) for line in lines)  # (its colour codes go with `clean`)
    data = item.get("data") or {}
    if "text/plain" in data:
        text = data["text/plain"]
        return "".join(text) if isinstance(text, list) else str(text)
    if data:
        return f"<{', '.join(sorted(data))}>"
    return ""
