"""Generated results files: a stamp (command, data, backbone, date) and markdown tables from rows."""
from __future__ import annotations

import datetime
import shlex
import sys
from pathlib import Path

from hdmap.atomic_files import write_text_atomic


def describe_backbone(name: str, weights: str, taps, model_kwargs: dict | None = None) -> str:
    """What actually ran: name, weights, the taps (or tap sets) used, and a non-default model size."""
    size = f", model size {model_kwargs}" if model_kwargs else ""
    return f"`{name}` (weights `{weights}`, taps {taps}{size})"


def stamp(data_root: str, backbone: str, synthetic: bool) -> list[str]:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    kind = "embedded SYNTHETIC data" if synthetic else "user data"
    return [f"- command: `{command}`", f"- data: {kind} at `{data_root}`", f"- backbone: {backbone}",
            f"- generated: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} by the script above; not edited by hand"]


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def write_results(path, lines: list[str]) -> None:
    """Write a generated results file (creating its folder) and print it; only print it when `path` is None."""
    if path is None:
        print("\n".join(lines))
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


def pct(value):
    return None if value is None else 100.0 * value
