"""Tree-packed scoring: a prompt's candidates share one pass over the prompt, and several prompts share a row.

A packed row holds, for each part (a group of candidates, usually one prompt's), their shared prefix once (the
longest common prefix of their token ids), then each candidate's remaining tokens. Positions restart after the
prefix for every candidate, and a token sees, causally, only its own candidate and its part's prefix, so each
candidate gets exactly the hidden states it would get alone. Its score is read where the padded path reads it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Hashable, Iterator, Sequence

from ._deps import require

# Plain causal full-attention decoders whose base model takes position_ids and a 4-D mask as given.
PACKABLE_MODEL_TYPES = frozenset({"llama", "qwen2", "qwen3"})
ATTENTION_CHOICES = ("auto", "flex", "sdpa")
ROW_BUCKET = 128  # packed flex rows are padded to bucketed lengths (FlexAttention's block size), few shapes compile
CPU_TOKEN_BUDGET = 16384
MAX_ROW_TOKENS = 32768
GPU_MEMORY_FRACTION = 0.5
ACTIVATION_VALUES_PER_WIDTH = 8  # live activations per token, in units of (hidden + intermediate) values
SDPA_ATTENTION_SHARE = 0.25  # SDPA rows stay short enough that the full L x L attention costs <= 1/4 of the matmuls

Sequences = Sequence[Sequence[int]]


@dataclass(frozen=True)
class Row:
    """One forward pass: sequence indices in parts (packed: each part shares a prefix; padded: one batch)."""

    parts: tuple[tuple[int, ...], ...]
    tokens: int

    @property
    def members(self) -> list[int]:
        return [i for part in self.parts for i in part]


@dataclass(frozen=True)
class Batching:
    """How a scoring call ran: its path, forward passes, tokens through the model (bucket padding not counted),
    rows split after running out of memory, and the token budget per forward pass it started with."""

    path: str
    rows: int
    tokens: int
    oom_splits: int
    budget: int = 0


@dataclass
class PackedInputs:
    """A packed row as model inputs: ids, positions, attention segments, and the index each score is read at."""

    input_ids: list[int]
    position_ids: list[int]
    segment: list[int]
    parent: list[int]
    readout: list[int]


def supports_packing(model: Any) -> bool:
    """Whether packed scores equal padded ones: a known plain decoder with only full-attention layers."""
    config = model.config
    full_attention = all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or ())
    return config.model_type in PACKABLE_MODEL_TYPES and full_attention and hasattr(model, "score")


def bucket_length(n: int) -> int:
    """`n` rounded up to a bucket: a multiple of `ROW_BUCKET` up to 2048 tokens, beyond that of 1/16 of the next
    power of two (at most 12.5 % padding), so a run compiles a few shapes, not one per row length."""
    step = max(ROW_BUCKET, 1 << max(0, (n - 1).bit_length() - 4))
    return -(-n // step) * step


def bucket_floor(budget: int) -> int:
    """The largest bucket length within `budget` (the budget itself below one bucket): rows planned within it stay
    within it once padded to `bucket_length`, and a budget that moves with free memory adds no new shapes."""
    if budget < ROW_BUCKET:
        return budget
    step = max(ROW_BUCKET, 1 << max(0, budget.bit_length() - 4))
    return budget // step * step


def forward_flops(config: Any) -> tuple[int, int]:
    """Forward FLOPs of a decoder per token in its matmuls, and per attended (query, key) pair, over all layers."""
    hidden, heads, kv_heads = config.hidden_size, config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    matmul_params = hidden * head_dim * 2 * (heads + kv_heads) + 3 * hidden * config.intermediate_size
    return 2 * config.num_hidden_layers * matmul_params, 4 * config.num_hidden_layers * heads * head_dim


def sdpa_row_tokens(config: Any) -> int:
    """Longest packed SDPA row whose full L x L attention (SDPA cannot skip masked blocks) stays cheap."""
    per_token, per_pair = forward_flops(config)
    return max(1, int(SDPA_ATTENTION_SHARE * per_token / per_pair))


def default_token_budget(model: Any, attention: str | None) -> int:
    """Tokens per forward pass: fixed on CPU, on CUDA a share of free memory over per-token activations, capped;
    for packed SDPA (`attention="sdpa"`) also at most `sdpa_row_tokens`."""
    torch = require("torch", "hf")
    param = next(model.parameters())
    budget = CPU_TOKEN_BUDGET
    if param.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(param.device)
        width = model.config.hidden_size + model.config.intermediate_size
        per_token = param.element_size() * ACTIVATION_VALUES_PER_WIDTH * width
        budget = min(MAX_ROW_TOKENS, int(free * GPU_MEMORY_FRACTION) // per_token)
    return max(1, min(budget, sdpa_row_tokens(model.config)) if attention == "sdpa" else budget)


def common_prefix_len(sequences: Sequences) -> int:
    """Length of the longest common prefix of token-id sequences."""
    length = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        length += 1
    return length


def pooled_index(ids: Sequence[int], pad_id: int | None) -> int:
    """Where the padded path reads a score: the last token that is not the pad token (0 if all are)."""
    if pad_id is None:
        return len(ids) - 1
    return next((k for k in reversed(range(len(ids))) if ids[k] != pad_id), 0)


def _split_group(sequences: Sequences, members: list[int], budget: int) -> Iterator[tuple[tuple[int, ...], int]]:
    """Consecutive parts of a group that each fit the budget once packed (one candidate at least), with sizes."""
    part: list[int] = []
    total = prefix = 0
    for i in members:
        seq = sequences[i]
        shared = min(prefix, common_prefix_len([sequences[part[0]], seq])) if part else len(seq)
        if part and total + len(seq) - len(part) * shared > budget:
            yield tuple(part), total - (len(part) - 1) * prefix
            part, total, shared = [], 0, len(seq)
        part.append(i)
        total += len(seq)
        prefix = shared
    if part:
        yield tuple(part), total - (len(part) - 1) * prefix


def plan_packed_rows(
    sequences: Sequences, groups: Sequence[Hashable], indices: Sequence[int], budget: int
) -> list[Row]:
    """Rows of at most `budget` tokens: groups in order, a group split into parts where it would not fit."""
    by_group: dict[Hashable, list[int]] = {}
    for i in indices:
        by_group.setdefault(groups[i], []).append(i)
    rows: list[Row] = []
    parts: list[tuple[int, ...]] = []
    used = 0
    for members in by_group.values():
        for part, size in _split_group(sequences, members, budget):
            if parts and used + size > budget:
                rows.append(Row(tuple(parts), used))
                parts, used = [], 0
            parts.append(part)
            used += size
    if parts:
        rows.append(Row(tuple(parts), used))
    return rows


def pack_row(sequences: Sequences, row: Row, pad_id: int | None, length: int | None = None) -> PackedInputs:
    """Lay a row out: per part, its common prefix once, then each candidate's own tokens (positions resume at p);
    then pad tokens up to `length`, in a segment of their own that no real token sees."""
    inputs = PackedInputs([], [], [], [], [])
    segment_ids = itertools.count()
    for part in row.parts:
        seqs = [sequences[i] for i in part]
        p, prefix_start, prefix_id = common_prefix_len(seqs), len(inputs.input_ids), next(segment_ids)
        _append(inputs, seqs[0][:p], 0, prefix_id, prefix_id)
        for seq in seqs:
            start, k = len(inputs.input_ids), pooled_index(seq, pad_id)
            inputs.readout.append(prefix_start + k if k < p else start + k - p)
            _append(inputs, seq[p:], p, next(segment_ids), prefix_id)
    if length is not None and length > len(inputs.input_ids):
        pad_segment = next(segment_ids)
        _append(inputs, [pad_id or 0] * (length - len(inputs.input_ids)), 0, pad_segment, pad_segment)
    return inputs


def _append(inputs: PackedInputs, ids: Sequence[int], first_position: int, segment: int, parent: int) -> None:
    inputs.input_ids.extend(ids)
    inputs.position_ids.extend(range(first_position, first_position + len(ids)))
    inputs.segment.extend([segment] * len(ids))
    inputs.parent.extend([parent] * len(ids))


def visible(segment: Any, parent: Any, q: Any, kv: Any) -> Any:
    """Token `q` sees token `kv`: causally, and only within its own segment or the prefix segment it hangs from."""
    return (kv <= q) & ((segment[kv] == segment[q]) | (segment[kv] == parent[q]))


def dense_mask(segment: Any, parent: Any) -> Any:
    """The boolean [1, 1, L, L] mask (True = attend) that SDPA takes as given."""
    torch = require("torch", "hf")
    index = torch.arange(len(segment), device=segment.device)
    return visible(segment, parent, index[:, None], index[None, :])[None, None]


def block_mask(segment: Any, parent: Any) -> Any:
    """The same mask as a FlexAttention BlockMask, built by a compiled kernel (eager would materialise L x L)."""
    flex = require("torch.nn.attention.flex_attention", "hf")
    n = len(segment)
    return flex.create_block_mask(
        lambda b, h, q, kv: visible(segment, parent, q, kv),
        B=None,
        H=None,
        Q_LEN=n,
        KV_LEN=n,
        device=segment.device,
        _compile=True,
    )


def score_head(model: Any, hidden: Any) -> Any:
    """The 1-logit head in fp32 over gathered hidden states (bf16 would round 3.01 and 3.02 to one value).

    A linear head (every decoder classifier's `score`, also after merging LoRA) runs in fp32; any other head (an
    unmerged adapter wrapper) runs in its own dtype, its output in fp32."""
    torch = require("torch", "hf")
    head = model.score
    if isinstance(head, torch.nn.Linear):
        bias = None if head.bias is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
    return head(hidden).float()


def forward_packed(model: Any, inputs: PackedInputs, attention: str) -> list[float]:
    """Scores of a packed row: the base model over the row with its mask, then the fp32 head at each readout token.

    `model` must run `scoring_paths.DISPATCH_ATTENTION`, which sends the BlockMask to flex and a dense mask to SDPA."""
    torch = require("torch", "hf")
    device = next(model.parameters()).device

    def tensor(values: list[int]) -> Any:
        return torch.tensor(values, dtype=torch.long, device=device)

    segment, parent = tensor(inputs.segment), tensor(inputs.parent)
    mask = block_mask(segment, parent) if attention == "flex" else dense_mask(segment, parent)
    base = getattr(model, model.base_model_prefix)
    with torch.inference_mode():
        hidden = base(
            input_ids=tensor(inputs.input_ids)[None],
            position_ids=tensor(inputs.position_ids)[None],
            attention_mask=mask,
            use_cache=False,
        ).last_hidden_state
        logits = score_head(model, hidden[0, tensor(inputs.readout)])
    return logits[:, 0].tolist()
