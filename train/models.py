"""Model specs in the pipeline configs: a name or path, or `tiny`, a tiny random model built on the spot."""

from __future__ import annotations

from pathlib import Path

from codescaler_rerank.testing import build_tiny_qwen3_causal_lm, build_tiny_qwen3_classifier

TINY = "tiny"
BUILDERS = {"classifier": build_tiny_qwen3_classifier, "policy": build_tiny_qwen3_causal_lm}


def resolve_model(spec: str, kind: str, root: str | Path) -> str:
    """`spec` as given, or for `tiny` the path of a tiny Qwen3 `kind` ("classifier" or "policy") built under `root`."""
    if spec != TINY:
        return spec
    path = Path(root) / f"tiny-{kind}"
    if not (path / "config.json").exists():
        BUILDERS[kind](path)
    return str(path)
