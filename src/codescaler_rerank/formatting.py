"""The one place that turns (prompt, code) into reward-model input tokens.

As the CodeScaler paper and model card do: the RM's own chat template over
`[user: prompt, assistant: code]`, rendered to text, then tokenised with right truncation at `max_length`.
Inference, RL rewards, evaluation and RM training all go through here, so they cannot drift apart.
Tokenisers without a chat template (encoder RMs) get `PLAIN_TEMPLATE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

PLAIN_TEMPLATE = "{prompt}\n\n{code}"


def rm_conversation(prompt: str, code: str) -> list[dict[str, str]]:
    """The conversation the reward model judges."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": code}]


def rm_text(tokenizer: Any, prompt: str, code: str) -> str:
    """RM input as text: the tokenizer's chat template, or `PLAIN_TEMPLATE` when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(rm_conversation(prompt, code), tokenize=False)
    return PLAIN_TEMPLATE.format(prompt=prompt, code=code)


@dataclass(frozen=True)
class EncodedInput:
    """Token ids of one RM input; `truncated` when the text was longer than `max_length` tokens."""

    input_ids: list[int]
    truncated: bool


def encode_rm_inputs(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[EncodedInput]:
    """Tokenise (prompt, code) pairs exactly as `tokenizer(text, truncation=True, max_length=max_length)` would."""
    texts = [rm_text(tokenizer, prompt, code) for prompt, code in pairs]
    if not texts:
        return []
    full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    over = [i for i, ids in enumerate(full) if len(ids) > max_length]
    if over:
        cut = tokenizer([texts[i] for i in over], truncation=True, max_length=max_length)["input_ids"]
        for i, ids in zip(over, cut):
            full[i] = ids
    overset = set(over)
    return [EncodedInput(list(ids), i in overset) for i, ids in enumerate(full)]
