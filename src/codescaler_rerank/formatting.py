"""The one place that turns (prompt, code) into reward-model input tokens.

As the CodeScaler paper and model card do: the RM's own chat template over
`[user: prompt, assistant: code]`, rendered to text, then tokenised with right truncation at `max_length`.
Inference, RL rewards, evaluation and RM training all go through here, so they cannot drift apart.
Tokenisers without a chat template (encoder RMs) get `PLAIN_TEMPLATE`.

Control tokens written literally in code (`<|im_end|>`, `<|endoftext|>`, ...) are parsed as the real special
tokens, exactly as the recipe's `tokenizer(texts)` does, so the RM gets the same tokens CodeScaler was trained and
evaluated on. Such a token can close that candidate's turn early (it may score oddly), never change another
candidate's score: each input is scored alone (padded) or behind an attention mask (packed), and read out at its
own last non-pad token. `EncodedInput.control_tokens` (and `ScoredInput`, `Candidate`) name the ones found in the
code, so callers can flag the candidate.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

PLAIN_TEMPLATE = "{prompt}\n\n{code}"
# A fast tokenizer's truncation setting is state of the shared Rust object: two threads tokenising with different
# settings at once would get each other's (or "Already borrowed"), so calls with a setting take turns.
_TOKENIZER_LOCK = threading.Lock()


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
    """Token ids of one RM input; `truncated` when the text was longer than `max_length` tokens; `control_tokens`:
    the tokenizer's special tokens written literally in the code."""

    input_ids: list[int]
    truncated: bool
    control_tokens: tuple[str, ...] = ()


def control_tokens_in(tokenizer: Any, code: str) -> tuple[str, ...]:
    """The tokenizer's special tokens that `code` contains as literal text."""
    specials = getattr(tokenizer, "all_special_tokens", None) or []
    added = [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special]
    return tuple(t for t in dict.fromkeys([*specials, *added]) if t and t in code)


def encode_rm_inputs(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[EncodedInput]:
    """Tokenise (prompt, code) pairs exactly as `tokenizer(text, truncation=True, max_length=max_length)` would."""
    texts = [rm_text(tokenizer, prompt, code) for prompt, code in pairs]
    if not texts:
        return []
    with _TOKENIZER_LOCK:
        full = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        over = [i for i, ids in enumerate(full) if len(ids) > max_length]
        if over:
            cut = tokenizer([texts[i] for i in over], truncation=True, max_length=max_length)["input_ids"]
            for i, ids in zip(over, cut):
                full[i] = ids
    overset = set(over)
    return [
        EncodedInput(list(ids), i in overset, control_tokens_in(tokenizer, code))
        for i, (ids, (_, code)) in enumerate(zip(full, pairs))
    ]
