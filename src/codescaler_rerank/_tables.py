"""Plain-text tables for the evaluation reports."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])


def maybe(value: float | None, fmt: str) -> str:
    """`value` formatted, or "-" when there is none."""
    return "-" if value is None else fmt.format(value)
