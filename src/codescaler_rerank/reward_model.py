"""Hugging Face reward models: `AutoModelForSequenceClassification` with one logit, scored per (prompt, code).

Decoder RMs on CUDA score tree-packed (see `packing`): each prompt once, its candidates after it, several prompts
per row, with FlexAttention, else SDPA, else padded (`scoring_paths` probes each at first use and falls back).
On CPU they score padded unless `attention="flex"`/`"sdpa"` asks for packing; encoder RMs, and `packing=False`,
run length-sorted padded batches. The score head runs in fp32 on every path (bf16 would tie 3.01 and 3.02).
Calls are thread-safe: one lock guards a model's forward passes and the state they change.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Hashable, Sequence

from ._deps import require
from .formatting import EncodedInput, RMPreset, encode_rm_inputs, resolve_preset
from .packing import (
    ATTENTION_CHOICES,
    MAX_ROW_TOKENS,
    ROW_BUCKET,
    Batching,
    Row,
    bucket_floor,
    bucket_length,
    default_token_budget,
    forward_packed,
    pack_row,
    plan_packed_rows,
    pooled_index,
    score_head,
    supports_packing,
)
from .scoring_paths import (
    PACKED_TRANSFORMERS_FLOOR,
    candidate_paths,
    compiled_graphs,
    disagreement,
    install_dispatch_attention,
    is_out_of_memory,
    probe_inputs,
    run_rows,
    tolerance,
)

DEFAULT_REWARD_MODEL = "LARK-Lab/CodeScaler-8B"
PAD_FALLBACK = "<|pad|>"


class RewardModelError(RuntimeError):
    """A reward model could not be loaded or is not a 1-logit classifier."""


@dataclass(frozen=True)
class ScoredInput:
    """Raw score of one (prompt, code) pair, its token count, whether it was truncated to `max_length`, and the
    tokenizer's control tokens (e.g. `<|im_end|>`) written literally in the code, which the RM reads as the real
    special tokens, as the model card's recipe does (see `formatting`)."""

    score: float
    n_tokens: int
    truncated: bool
    control_tokens: tuple[str, ...] = ()


def scored_inputs(scores: Sequence[float], encoded: Sequence[EncodedInput]) -> list[ScoredInput]:
    """`ScoredInput`s of encoded inputs and their scores (every backend reports the same fields)."""
    return [
        ScoredInput(s, len(e.input_ids), e.truncated, e.control_tokens) for s, e in zip(scores, encoded, strict=True)
    ]


@dataclass(frozen=True)
class Warmup:
    """What `RewardModel.warmup()` did: the scoring path chosen, seconds spent, graphs torch.compile built."""

    path: str
    seconds: float
    compiled_graphs: int


def warm_up(scorer: Any) -> Warmup | None:
    """`scorer.warmup()` where the reward model has one (Hugging Face), else None (vLLM, remote: nothing to do)."""
    warmup = getattr(scorer, "warmup", None)
    return warmup() if callable(warmup) else None


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
        preset: str | RMPreset | None = None,
    ) -> None:
        """`token_budget`: tokens per forward pass (None: `packing.default_token_budget`, re-read each call).
        `packing`: None packs supported decoders where `attention` says so; False pads; True packs (an error for a
        model that cannot). `attention` of packed rows: "auto" (CUDA: flex, then SDPA; CPU: padded, or SDPA with
        `packing=True`), "flex" or "sdpa"; see `scoring_paths.candidate_paths`. A packing reward model sets the
        model's attention implementation once, to `scoring_paths.DISPATCH_ATTENTION` (SDPA for padded calls).
        `preset`: the input preset (`formatting.RMPreset` or its name; None: from the model's name)."""
        label = name or type(model).__name__
        if getattr(model.config, "num_labels", None) != 1:
            raise RewardModelError(
                f"{label} has num_labels={model.config.num_labels}; "
                "a CodeScaler-style reward model is a sequence classifier with exactly one logit"
            )
        if attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, not {attention!r}")
        packable = supports_packing(model)
        if packing and not packable:
            raise RewardModelError(f"{label} ({model.config.model_type}) cannot be scored packed; use packing=False")
        ensure_distinct_pad_token(tokenizer, model)
        positions = getattr(model.config, "max_position_embeddings", None)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = min(max_length, positions) if positions else max_length
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self._paths = candidate_paths(packing, attention, self.device, packable)
        if packing and self._paths == ["padded"]:
            floor, version = ".".join(map(str, PACKED_TRANSFORMERS_FLOOR)), require("transformers", "hf").__version__
            warnings.warn(f"packed scoring needs transformers>={floor} (installed: {version}); scoring padded",
                          RuntimeWarning, stacklevel=2)
        if self.packing:
            install_dispatch_attention(model)
        self._fixed_budget = token_budget
        self._oom_budget: int | None = None  # half the row that last ran out of memory, kept from then on
        self._probed = not self.packing
        self._lock = threading.RLock()
        self.preset = resolve_preset(preset, self.name)
        self.directory: str | None = None  # the local directory it was loaded from (where a calibration is looked for)
        self.last_batching: Batching | None = None
        self.warmed_up: Warmup | None = None  # what the last `warmup()` did

    @property
    def scoring_path(self) -> str:
        """The path scoring uses now: "packed-flex", "packed-sdpa" or "padded" (before the probe: the one to try)."""
        return self._paths[0]

    @property
    def packing(self) -> bool:
        """Whether scoring runs packed now (False once every packed path has fallen back)."""
        return self.scoring_path != "padded"

    @property
    def attention(self) -> str | None:
        """Attention of the packed path in use ("flex", "sdpa"), None when padded."""
        return self.scoring_path.removeprefix("packed-") if self.packing else None

    @property
    def token_budget(self) -> int:
        """Tokens per forward pass now: as given, or from free memory (read again on each access), and at most
        half the row that last ran out of memory."""
        packed_sdpa = "sdpa" if self.scoring_path == "packed-sdpa" else None
        budget = max(self._fixed_budget or default_token_budget(self.model, packed_sdpa), self.max_length)
        return min(budget, self._oom_budget) if self._oom_budget else budget

    def warmup(self) -> Warmup:
        """Settle the scoring path now rather than on the first call: probe packed paths against padded and, for
        flex, compile its kernels on the shortest and the longest row (a second shape makes torch.compile build
        dynamic-shape kernels, which every other bucketed length reuses)."""
        with self._lock:
            start, graphs = time.perf_counter(), compiled_graphs()
            self._probe()
            if self.scoring_path == "packed-flex":
                token = 1 if self.tokenizer.pad_token_id == 0 else 0
                longest = bucket_floor(min(self.token_budget, MAX_ROW_TOKENS))
                for length in (ROW_BUCKET, max(2 * ROW_BUCKET, longest)):
                    self.score_token_ids([[token] * length])
            self.warmed_up = Warmup(self.scoring_path, time.perf_counter() - start, compiled_graphs() - graphs)
            return self.warmed_up

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
        preset: str | RMPreset | None = None,
        **model_kwargs: Any,
    ) -> "RewardModel":
        """Load a classifier and its tokenizer; bf16 on GPU, fp32 on CPU unless `dtype` says otherwise.

        `preset` (`formatting.RMPreset` or its name) defaults to the one the name implies (`formatting.preset_for`:
        Themis-RM names get the Themis system prompt, others CodeScaler's plain conversation)."""
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
        rm = cls(
            model.to(device),
            tokenizer,
            max_length=max_length,
            token_budget=token_budget,
            packing=packing,
            attention=attention,
            name=name_or_path,
            preset=preset,
        )
        rm.directory = str(name_or_path) if Path(name_or_path).is_dir() else None
        return rm

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[EncodedInput]:
        """RM input tokens for each (prompt, code) pair, built by the library's single formatter."""
        return encode_rm_inputs(self.tokenizer, pairs, self.max_length, self.preset)

    def score(self, prompt: str, codes: Sequence[str]) -> list[float]:
        """Raw scores of `codes` as answers to `prompt`, in the order given."""
        return [s.score for s in self.score_pairs([(prompt, code) for code in codes])]

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]:
        """Score (prompt, code) pairs across any number of prompts; how it ran is left in `last_batching`."""
        encoded = self.encode(pairs)
        scores = self.score_token_ids([e.input_ids for e in encoded], [prompt for prompt, _ in pairs])
        return scored_inputs(scores, encoded)

    def score_token_ids(
        self, sequences: Sequence[Sequence[int]], groups: Sequence[Hashable] | None = None
    ) -> list[float]:
        """Raw scores of encoded RM inputs; each distinct sequence runs once.

        Packed, sequences with the same `groups` key (e.g. their prompt) share one pass over their common prefix;
        keys only steer efficiency, never the scores.
        """
        keys = [tuple(seq) for seq in sequences]
        vocab = self.model.get_input_embeddings().num_embeddings
        bad = next((k for k in keys if not k or min(k) < 0 or max(k) >= vocab), None)
        if bad is not None:
            raise ValueError(f"token ids must be non-empty and in [0, {vocab}): got a sequence of {len(bad)} ids")
        distinct: dict[tuple[int, ...], Hashable] = {}
        for key, group in zip(keys, [None] * len(keys) if groups is None else groups, strict=True):
            distinct.setdefault(key, group)
        scores = dict(zip(distinct, self._forward(list(distinct), list(distinct.values()))))
        return [scores[key] for key in keys]

    def _forward(self, sequences: list[tuple[int, ...]], groups: list[Hashable]) -> list[float]:
        """Score on the current path; a packed path that raises (not out of memory) is dropped, the call rescored."""
        if not sequences:
            return []
        with self._lock:
            self._probe()
            while True:
                path = self.scoring_path
                try:
                    scores, batching = self._run_path(path, sequences, groups)
                except Exception as exc:
                    if path == "padded" or is_out_of_memory(exc):
                        raise
                    self._fall_back(f"{type(exc).__name__}: {exc}")
                    continue
                self.last_batching = batching
                return scores

    def _run_path(
        self, path: str, sequences: list[tuple[int, ...]], groups: list[Hashable]
    ) -> tuple[list[float], Batching]:
        budget = self.token_budget  # read once per call: free memory may have changed since the last one
        if path == "padded":
            plan, run = partial(padded_rows, sequences), partial(self._run_padded, sequences)
        else:
            attention = path.removeprefix("packed-")
            plan, run = partial(plan_packed_rows, sequences, groups), partial(self._run_packed, sequences, attention)
            if attention == "flex":  # rows are padded to bucket lengths: plan them so the padding fits the budget
                budget = bucket_floor(budget)
        return run_rows(path, len(sequences), budget, plan, run, self._after_oom)

    def _probe(self) -> None:
        """Keep the first packed path that agrees with padded on `probe_inputs`; drop the others with a warning."""
        if self._probed:
            return
        sequences, groups = probe_inputs(len(self.tokenizer), self.tokenizer.pad_token_id)
        want, _ = self._run_path("padded", sequences, groups)
        limit = tolerance(next(self.model.parameters()).dtype)
        while self.packing:
            try:
                got, _ = self._run_path(self.scoring_path, sequences, groups)
            except Exception as exc:
                self._fall_back(f"{type(exc).__name__}: {exc}")
                continue
            if disagreement(got, want) <= limit:
                break
            self._fall_back(f"its scores differ from padded by {disagreement(got, want):.2e} (> {limit:g})")
        self._probed = True

    def _fall_back(self, reason: str) -> None:
        failed = self._paths.pop(0)
        warnings.warn(
            f"{self.name}: {failed} scoring failed on {self.device} ({reason}); scoring with {self.scoring_path}",
            RuntimeWarning,
            stacklevel=5,
        )

    def _after_oom(self, row: Row) -> None:
        """Out of memory on `row`: keep the budget at most half its size from now on (rows planned before an earlier
        OOM in the same call do not halve it twice), and free the cached blocks."""
        torch = require("torch", "hf")
        self._oom_budget = max(1, min(self._oom_budget or row.tokens, row.tokens // 2))
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run_packed(self, sequences: list[tuple[int, ...]], attention: str, row: Row) -> list[float]:
        length = bucket_length(row.tokens) if attention == "flex" else None
        inputs = pack_row(sequences, row, self.tokenizer.pad_token_id, length)
        return forward_packed(self.model, inputs, attention)

    def _run_padded(self, sequences: list[tuple[int, ...]], row: Row) -> list[float]:
        """A padded batch; decoders read the last non-pad token through the fp32 head, encoders their own head."""
        torch = require("torch", "hf")
        batch = row.members
        width = max(len(sequences[i]) for i in batch)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for k, i in enumerate(batch):
            ids[k, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[k, : len(sequences[i])] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        with torch.inference_mode():
            if not hasattr(self.model, "score"):  # an encoder's own pooler and classifier
                return self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
            base = getattr(self.model, self.model.base_model_prefix)
            hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            readout = torch.tensor([pooled_index(sequences[i], pad) for i in batch], device=self.device)
            logits = score_head(self.model, hidden[torch.arange(len(batch), device=self.device), readout])
        return logits[:, 0].tolist()

    def __repr__(self) -> str:
        return (f"RewardModel({self.name!r}, device={self.device}, max_length={self.max_length}, "
                f"preset={self.preset.name!r})")
