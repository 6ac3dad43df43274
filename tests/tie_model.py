"""A tiny bf16 Qwen3 classifier whose two test answers score 3.0106 and 3.0206 through an fp32 head, while the
model's own bf16 head rounds both to 3.015625 (bf16 keeps 8 significant bits: a step of 1/64 at 3).

Every attention and MLP output projection is zero, so a token's last hidden state is RMSNorm(its embedding),
exactly +-1 in bf16 whatever the kernels, batch shapes or packing; the two answers are cut at `max_length` so that
their last (read-out) tokens differ, and those tokens' embeddings and the head's weights set the scores exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from codescaler_rerank.formatting import encode_rm_inputs
from codescaler_rerank.testing import build_tiny_qwen3_classifier

PROMPT = "Write add(a, b)."
CODES = ("def add(a, b):\n    return a + b\n", "def add(a, b):\n    return b + a\n")
SCORES = (3.0 + 1 / 64 - 0.0050048828125, 3.0 + 1 / 64 + 0.0050048828125)  # the head: 3, 1/64, -bf16(0.005)
BF16_TIE = 3.015625


def build_tie_classifier(path: str | Path) -> int:
    """Save the classifier and its tokenizer at `path`; returns the `max_length` the scores above need."""
    build_tiny_qwen3_classifier(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    full = [e.input_ids for e in encode_rm_inputs(tokenizer, [(PROMPT, c) for c in CODES], 4096)]
    max_length = next(k for k, (a, b) in enumerate(zip(*full)) if a != b) + 1
    first, second = (ids[max_length - 1] for ids in full)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        embeddings = model.get_input_embeddings().weight
        embeddings[first] = 1.0
        embeddings[second] = 1.0
        embeddings[second, 0] = -1.0
        model.score.weight.zero_()
        model.score.weight[0, :3] = torch.tensor([-0.005, 3.0, 1 / 64])
    model.to(torch.bfloat16).save_pretrained(str(path))
    return max_length
