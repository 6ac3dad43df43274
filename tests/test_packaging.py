"""The core package imports without the heavy extras, and missing extras name their pip command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from codescaler_rerank._deps import MissingExtraError, require


def test_import_is_light():
    code = (
        "import sys, codescaler_rerank\n"
        "heavy = [m for m in ('torch', 'transformers', 'litellm', 'trl', 'vllm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from codescaler_rerank import rerank, Reranker, RewardModel, extract_code, shape_reward\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_extra_names_the_install_command():
    with pytest.raises(MissingExtraError, match=r'pip install "codescaler-rerank\[hf\]"'):
        require("a_module_that_is_not_installed", "hf")
