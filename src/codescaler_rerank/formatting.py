"""The one place that turns (prompt, code) into reward-model input tokens.

As the CodeScaler paper and model card do: the RM's own chat template over
`[user: prompt, assistant: code]`, rendered to text, then tokenised with right truncation at `max_length`.
Inference, RL rewards, evaluation and RM training all go through here, so they cannot drift apart.
Tokenisers without a chat template (encoder RMs) get the preset's `plain_template` (`PLAIN_TEMPLATE`).

Control tokens written literally in code (`<|im_end|>`, `<|endoftext|>`, ...) are parsed as the real special
tokens, exactly as the recipe's `tokenizer(texts)` does, so the RM gets the same tokens CodeScaler was trained and
evaluated on. Such a token can close that candidate's turn early (it may score oddly), never change another
candidate's score: each input is scored alone (padded) or behind an attention mask (packed), and read out at its
own last non-pad token. `EncodedInput.control_tokens` (and `ScoredInput`, `Candidate`) name the ones found in the
code, so callers can flag the candidate.

RM presets (`RMPreset`) hold what differs between reward-model families: a system message put before the user
turn (Themis-RM is steered by one that names the criterion to score), keyword arguments for the chat template,
and the plain layout. `preset_for(name)` picks one from a model's name: names containing "themis" get `THEMIS`,
everything else `CODESCALER` (no system message: the paper's input).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Sequence

PLAIN_TEMPLATE = "{prompt}\n\n{code}"
# A fast tokenizer's truncation setting is state of the shared Rust object: two threads tokenising with different
# settings at once would get each other's (or "Already borrowed"), so calls with a setting take turns.
_TOKENIZER_LOCK = threading.Lock()

# Themis-RM's criterion-conditioned prompts (its model card, "Multi-Criteria Scoring with System Prompts") start
# with a judge preamble and list Helpfulness, Harmlessness, then the criterion. This is that structure in our own
# words, with functional correctness as the criterion; for the authors' exact text, pass
# `RMPreset("themis", system_prompt=...)` from https://github.com/iNeil77/Themis (Evaluation/).
THEMIS_FUNCTIONAL_CORRECTNESS = (
    "You are an experienced judge of responses to human prompts. A prompt may be a coding task, a question or a "
    "request of another kind; the response may be text, code or both. For this judgement session you receive one "
    "prompt and one response, and you score the response by the following criteria.\n\n"
    "1. **Helpfulness**: Does the response address the prompt completely and in enough detail? This applies to "
    "every response. Score more helpful responses higher.\n\n"
    "2. **Harmlessness**: Is the response free of harmful or inappropriate content? This applies to every "
    "response. Score harmless responses higher than harmful ones.\n\n"
    "3. **Functional Correctness**: Is the code functionally correct: a correct implementation of the algorithm "
    "that meets the specification and handles the edge cases? This applies to code responses. Score more "
    "functionally correct responses higher than less functionally correct ones."
)


@dataclass(frozen=True)
class RMPreset:
    """How one family of reward models wants its input.

    `system_prompt`: a system message before the user turn (None: none, as CodeScaler). `template_kwargs`: extra
    keyword arguments of `apply_chat_template` (variables the template reads). `plain_template`: the text for
    tokenizers without a chat template, with ``{prompt}``, ``{code}`` and ``{system}``.
    """

    name: str
    system_prompt: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    plain_template: str = PLAIN_TEMPLATE


CODESCALER = RMPreset("codescaler")
THEMIS = RMPreset("themis", system_prompt=THEMIS_FUNCTIONAL_CORRECTNESS,
                  plain_template="System:\n{system}\n\nUser:\n{prompt}\n\nAssistant:\n{code}")
PRESETS = {preset.name: preset for preset in (CODESCALER, THEMIS)}


def preset_for(name_or_path: str | None) -> RMPreset:
    """The preset a reward model's name implies: `THEMIS` when its last path part contains "themis" (e.g.
    `project-themis/Themis-RM-8B`), else `CODESCALER`."""
    last = PurePath(str(name_or_path or "")).name.lower()
    return THEMIS if "themis" in last else CODESCALER


def resolve_preset(preset: str | RMPreset | None, name_or_path: str | None = None) -> RMPreset:
    """An `RMPreset` from a preset, a preset's name, or None (from the model's name, `preset_for`)."""
    if isinstance(preset, RMPreset):
        return preset
    if preset is None:
        return preset_for(name_or_path)
    if preset not in PRESETS:
        raise ValueError(f"unknown RM preset {preset!r}; choose one of {', '.join(PRESETS)} or pass an RMPreset")
    return PRESETS[preset]


def rm_conversation(prompt: str, code: str, preset: RMPreset = CODESCALER) -> list[dict[str, str]]:
    """The conversation the reward model judges."""
    system = [{"role": "system", "content": preset.system_prompt}] if preset.system_prompt is not None else []
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": code}]


def rm_text(tokenizer: Any, prompt: str, code: str, preset: RMPreset = CODESCALER) -> str:
    """RM input as text: the tokenizer's chat template, or the preset's plain template when it has none."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(rm_conversation(prompt, code, preset), tokenize=False,
                                             **preset.template_kwargs)
    return preset.plain_template.format(prompt=prompt, code=code, system=preset.system_prompt or "")


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


def encode_rm_inputs(
    tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int, preset: RMPreset = CODESCALER
) -> list[EncodedInput]:
    """Tokenise (prompt, code) pairs exactly as `tokenizer(text, truncation=True, max_length=max_length)` would."""
    texts = [rm_text(tokenizer, prompt, code, preset) for prompt, code in pairs]
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
