"""Lazy imports of optional dependencies, with errors that name the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip command."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming `pip install "codescaler-rerank[extra]"`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is needed for this feature but is not installed: "
            f'pip install "codescaler-rerank[{extra}]"'
        ) from exc
