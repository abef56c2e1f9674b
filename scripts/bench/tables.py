"""Markdown table primitives of the benchmark report: cell formatting, rows and tables."""

from __future__ import annotations


def fmt(value: object, spec: str = ".2f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def line(cells: list[object]) -> str:
    """One markdown table row of cells already formatted."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def row(label: str, cells: list[object], spec: str = ".3f") -> str:
    return line([label, *(fmt(c, spec) for c in cells)])


def table(title: str | None, columns: list[str], align: str, rows: list[str]) -> list[str]:
    """A markdown table after a blank line and ``title`` (none: just the blank line).

    ``align`` has one letter a column: ``l`` left, ``r`` right; the last one repeats for the
    columns after it.
    """
    align = align.ljust(len(columns), align[-1])
    rule = "|" + "".join("---|" if a == "l" else "---:|" for a in align)
    heading = ["", title, ""] if title is not None else [""]
    return [*heading, line(columns), rule, *rows]
