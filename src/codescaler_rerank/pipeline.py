"""The shared extract → dedup → score → shape path, used by reranking, RL rewards and evaluation alike."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Protocol, Sequence

from .assembly import detect_entry_point
from .extraction import Extraction, canonical_language, extract_code, normalize_code
from .reward_model import ScoredInput
from .shaping import shape_reward


class RewardScorer(Protocol):
    """What the pipeline needs from a reward model (HF, vLLM or remote)."""

    name: str

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[ScoredInput]: ...


@dataclass(frozen=True)
class ScoredExtraction:
    """An extraction with its raw score (None if not scored), shaped reward and scoring details."""

    extraction: Extraction
    score: float | None
    reward: float
    valid: bool
    reason: str
    n_tokens: int = 0
    truncated: bool = False
    duplicate_of: int | None = None
    control_tokens: tuple[str, ...] = ()  # special tokens written literally in the code (see `formatting`)


def extract_all(
    texts: Sequence[str],
    language: str | None,
    mode: str,
    prompt: str | None = None,
    entry_point: str | None = None,
    *,
    checkpoint: Callable[[], None] | None = None,
) -> list[Extraction]:
    """Extract the code of each response to `prompt`; `checkpoint` (if given) is called before each one and
    may raise to stop.

    In lenient extraction in a named language the entry point (`entry_point`, else the one `prompt` names,
    see `assembly.detect_entry_point`) picks and assembles the answer; `strict` and `paper` ignore both."""
    entry = None
    if mode == "lenient" and (canonical := canonical_language(language)) is not None:
        entry = entry_point or (detect_entry_point(prompt, canonical) if prompt else None)
    extractions = []
    for text in texts:
        if checkpoint is not None:
            checkpoint()
        extractions.append(extract_code(text, language=language, mode=mode, entry_point=entry))
    return extractions


def score_each(
    scorer: RewardScorer, groups: Iterable[tuple[str, Sequence[str], str | None]], language: str | None, mode: str,
    dedup: str | bool = "normalized",
) -> Iterator[list[ScoredExtraction]]:
    """Extract and score the responses of each (prompt, responses, entry point or None) group, one reward-model
    call per group."""
    for prompt, texts, entry_point in groups:
        extractions = extract_all(texts, language, mode, prompt, entry_point)
        yield score_extractions(scorer, [(prompt, extractions)], dedup=dedup)[0]


DEDUP_MODES = ("exact", "normalized", "none")


def dedup_mode(dedup: str | bool | None) -> str:
    """The dedup mode a setting names: True is "normalized" (backwards compatible), False or None is "none"."""
    if dedup is True:
        return "normalized"
    if dedup is False or dedup is None:
        return "none"
    if dedup not in DEDUP_MODES:
        raise ValueError(f"dedup must be one of {DEDUP_MODES} or a bool, got {dedup!r}")
    return dedup


def score_extractions(
    scorer: RewardScorer, groups: Sequence[tuple[str, Sequence[Extraction]]], *, dedup: str | bool = "normalized"
) -> list[list[ScoredExtraction]]:
    """Score every valid extraction of every (prompt, extractions) group in one bulk call, then shape.

    Invalid code is not scored (reward 0). Within a group, `dedup="exact"` scores identical code strings (the same
    RM input) once; `"normalized"` also merges programs that differ only in layout and comments (inference: score
    each distinct program once); `"none"` scores every candidate. Sharers get the first one's score and
    `duplicate_of` names it.
    """
    mode = dedup_mode(dedup)
    pairs: list[tuple[str, str]] = []
    slots: list[list[tuple[int | None, int | None]]] = []  # per candidate: (pair index, duplicate_of)
    for prompt, extractions in groups:
        seen: dict[str | int, int] = {}
        group_slots: list[tuple[int | None, int | None]] = []
        for i, ex in enumerate(extractions):
            if not ex.valid:
                group_slots.append((None, None))
                continue
            key = _dedup_key(ex, mode, i)
            if key in seen:
                first = seen[key]
                group_slots.append((group_slots[first][0], first))
                continue
            seen[key] = i
            group_slots.append((len(pairs), None))
            pairs.append((prompt, ex.code))
        slots.append(group_slots)
    scored = scorer.score_pairs(pairs) if pairs else []
    return [
        [_shape(ex, None if slot is None else scored[slot], dup) for ex, (slot, dup) in zip(extractions, group_slots)]
        for (_, extractions), group_slots in zip(groups, slots)
    ]


def _dedup_key(ex: Extraction, mode: str, index: int) -> str | int:
    """Candidates with equal keys share one RM score; an int key (mode "none") never repeats."""
    if mode == "exact":
        return ex.code
    if mode == "normalized":
        return normalize_code(ex.code, ex.language)
    return index


def _shape(ex: Extraction, scored: ScoredInput | None, duplicate_of: int | None) -> ScoredExtraction:
    if scored is None:
        return ScoredExtraction(ex, None, 0.0, False, ex.reason)
    if not math.isfinite(scored.score):
        return ScoredExtraction(ex, None, 0.0, False, "score_not_finite", scored.n_tokens, scored.truncated,
                                duplicate_of, scored.control_tokens)
    return ScoredExtraction(ex, scored.score, shape_reward(scored.score, True), True, ex.reason, scored.n_tokens,
                            scored.truncated, duplicate_of, scored.control_tokens)
