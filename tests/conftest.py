"""Shared fixtures: tiny random-weight reward models built offline, once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_qwen3_path(tmp_path_factory):
    """Directory of a tiny Qwen3ForSequenceClassification (1 logit) with a chat-template tokenizer."""
    from codescaler_rerank.testing import build_tiny_qwen3_classifier

    path = tmp_path_factory.mktemp("tiny-qwen3")
    build_tiny_qwen3_classifier(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    """Directory of a tiny BertForSequenceClassification (an encoder RM, no chat template)."""
    from codescaler_rerank.testing import build_tiny_bert_classifier

    path = tmp_path_factory.mktemp("tiny-bert")
    build_tiny_bert_classifier(path)
    return path


@pytest.fixture(scope="session")
def tiny_rm(tiny_qwen3_path):
    from codescaler_rerank import RewardModel

    return RewardModel.from_pretrained(str(tiny_qwen3_path))
