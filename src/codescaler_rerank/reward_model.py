"""Hugging Face reward models: `AutoModelForSequenceClassification` with one logit, scored per (prompt, code).

Decoder RMs score tree-packed by default (see `packing`): each prompt once, its candidates after it, several
prompts per row. Encoder RMs, and `packing=False`, run length-sorted padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Hashable, Sequence

from ._deps import require
from .formatting import EncodedInput, encode_rm_inputs
from .packing import (
    ATTENTION_CHOICES,
    Batching,
    Row,
    default_token_budget,
    forward_packed,
    pack_row,
    plan_packed_rows,
    resolve_attention,
    run_rows,
    supports_packing,
)

DEFAULT_REWARD_MODEL = "LARK-Lab/CodeScaler-8B"
PAD_FALLBACK = "<|pad|>"


class RewardModelError(RuntimeError):
    """A reward model could not be loaded or is not a 1-logit classifier."""


@dataclass(frozen=True)
class ScoredInput:
    """Raw score of one (prompt, code) pair, its token count, and whether it was truncated to `max_length`."""

    score: float
    n_tokens: int
    truncated: bool


def micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices, sorted by length, so each padded batch holds at most `token_budget` tokens (min. one row)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > token_budget:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padded_rows(sequences: Sequence[Sequence[int]], indices: Sequence[int], budget: int) -> list[Row]:
    """`micro_batches` of the given sequences as rows, each costing its padded size."""
    lengths = [len(sequences[i]) for i in indices]
    return [
        Row((tuple(indices[j] for j in batch),), len(batch) * max(lengths[j] for j in batch))
        for batch in micro_batches(lengths, budget)
    ]


def ensure_distinct_pad_token(tokenizer: Any, model: Any) -> None:
    """Give the tokenizer a pad token that is not eos (pooling the last non-pad token needs it), and tell the model."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if pad is None or pad == eos:
        unk = tokenizer.unk_token_id
        if unk is not None and unk != eos:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_FALLBACK})
            if len(tokenizer) > model.get_input_embeddings().num_embeddings:
                model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id


class RewardModel:
    """A 1-logit sequence classifier that scores code answers to a prompt (raw logits, higher is better)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_length: int = 4096,
        token_budget: int | None = None,
        packing: bool | None = None,
        attention: str = "auto",
        name: str | None = None,
    ) -> None:
        """`token_budget`: tokens per forward pass (None: `packing.default_token_budget`).
        `packing`: None packs supported decoders and pads encoders.
        `attention` of packed rows: "flex", "sdpa", or "auto" (flex on CUDA, sdpa elsewhere)."""
        if getattr(model.config, "num_labels", None) != 1:
            raise RewardModelError(
                f"{name or type(model).__name__} has num_labels={model.config.num_labels}; "
                "a CodeScaler-style reward model is a sequence classifier with exactly one logit"
            )
        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, not {attention!r}")
        if packing and not supports_packing(model):
            raise RewardModelError(
                f"{name or type(model).__name__} ({model.config.model_type}) cannot be scored packed; use packing=False"
            )
        ensure_distinct_pad_token(tokenizer, model)
        positions = getattr(model.config, "max_position_embeddings", None)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, positions) if positions else max_length
        self.packing = supports_packing(model) if packing is None else packing
        self.attention = resolve_attention(attention, next(model.parameters()).device)
        default_budget = default_token_budget(model, self.attention if self.packing else None)
        self.token_budget = max(token_budget or default_budget, self.max_length)
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.last_batching: Batching | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str = DEFAULT_REWARD_MODEL,
        *,
        device: str | None = None,
        dtype: Any = None,
        max_length: int = 4096,
        token_budget: int | None = None,
        packing: bool | None = None,
        attention: str = "auto",
        trust_remote_code: bool = False,
        **model_kwargs: Any,
    ) -> "RewardModel":
        """Load a classifier and its tokenizer; bf16 on GPU, fp32 on CPU unless `dtype` says otherwise."""
        torch = require("torch", "hf")
        transformers = require("transformers", "hf")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                name_or_path, dtype=dtype, trust_remote_code=trust_remote_code, **model_kwargs
            )
        except (OSError, ValueError) as exc:
            raise RewardModelError(f"cannot load reward model {name_or_path!r}: {exc}") from exc
        tokenizer.padding_side = "right"
        return cls(
            model.to(device),
            tokenizer,
            max_length=max_length,
            token_budget=token_budget,
            packing=packing,
            attention=attention,
            name=name_or_path,
        )

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedInput]:
        """RM input tokens for each (prompt, code) pair, built by the library's single formatter."""
        return encode_rm_inputs(self.tokenizer, pairs, self.max_length)

    def score(self, prompt: str, codes: Sequence[str]) -> list[float]:
        """Raw scores of `codes` as answers to `prompt`, in the order given."""
        return [s.score for s in self.score_pairs([(prompt, code) for code in codes])]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Score (prompt, code) pairs across any number of prompts; how it ran is left in `last_batching`."""
        encoded = self.encode(pairs)
        scores = self.score_token_ids([e.input_ids for e in encoded], [prompt for prompt, _ in pairs])
        return [ScoredInput(s, len(e.input_ids), e.truncated) for s, e in zip(scores, encoded)]

    def score_token_ids(
        self, sequences: Sequence[Sequence[int]], groups: Sequence[Hashable] | None = None
    ) -> list[float]:
        """Raw scores of encoded RM inputs; each distinct sequence runs once.

        Packed, sequences with the same `groups` key (e.g. their prompt) share one pass over their common prefix;
        keys only steer efficiency, never the scores.
        """
        keys = [tuple(seq) for seq in sequences]
        distinct: dict[tuple[int, ...], Hashable] = {}
        for key, group in zip(keys, [None] * len(keys) if groups is None else groups, strict=True):
            distinct.setdefault(key, group)
        scores = dict(zip(distinct, self._forward(list(distinct), list(distinct.values()))))
        return [scores[key] for key in keys]

    def _forward(self, sequences: list[tuple[int, ...]], groups: list[Hashable]) -> list[float]:
        if self.packing:
            path, plan = f"packed-{self.attention}", partial(plan_packed_rows, sequences, groups)
            run = partial(self._run_packed, sequences)
        else:
            path, plan, run = "padded", partial(padded_rows, sequences), partial(self._run_padded, sequences)
        scores, self.last_batching = run_rows(path, len(sequences), self.token_budget, plan, run)
        return scores

    def _run_packed(self, sequences: list[tuple[int, ...]], row: Row) -> list[float]:
        return forward_packed(self.model, pack_row(sequences, row, self.tokenizer.pad_token_id), self.attention)

    def _run_padded(self, sequences: list[tuple[int, ...]], row: Row) -> list[float]:
        torch = require("torch", "hf")
        batch = row.members
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, i in enumerate(batch):
            ids[k, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[k, : len(sequences[i])] = 1
        with torch.inference_mode():
            logits = self.model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False
            ).logits
        return logits[:, 0].float().tolist()

    def __repr__(self) -> str:
        return f"RewardModel({self.name!r}, device={self.device}, max_length={self.max_length})"
