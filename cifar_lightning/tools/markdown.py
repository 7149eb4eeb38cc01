"""The one Markdown table writer of the reports and the sweep's table of trials."""

from typing import Any


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table's lines: the header, the rule, one line per row (cells as ``str`` gives them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
