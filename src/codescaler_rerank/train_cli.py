"""`codescaler-rerank train curate|rm|grpo --config ...`: the `train` pipelines, installed with the `train` extra.

The wheel ships `train/` as a second top-level package with its YAML configs, so `--config` takes a path or the
name of a bundled config (`curate_smoke`, `rm_1.7b_lora.yaml`, ...); relative paths inside a config (`runs/...`)
are relative to the working directory, as from a checkout.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Sequence

from ._deps import MissingExtraError

PIPELINES = {"curate": "train.curate", "rm": "train.reward_model", "grpo": "train.grpo"}
CONFIG_FLAG = "--config"


def configs_dir() -> Path:
    """The `configs/` directory of the installed `train` package."""
    spec = importlib.util.find_spec("train")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError('the training pipelines are not installed: pip install "codescaler-rerank[train]"')
    return Path(next(iter(spec.submodule_search_locations))) / "configs"


def bundled_configs() -> dict[str, Path]:
    """Bundled pipeline configs by name (file name without `.yaml`)."""
    return {path.stem: path for path in sorted(configs_dir().glob("*.yaml"))}


def resolve_config(value: str) -> Path:
    """`value` if it is a file, else the bundled config of that name (with or without `.yaml`)."""
    path = Path(value)
    if path.is_file():
        return path
    bundled = bundled_configs()
    name = path.name.removesuffix(".yaml")
    if path.parent == Path(".") and name in bundled:
        return bundled[name]
    raise FileNotFoundError(f"no config file {value!r} and no bundled config of that name; bundled: {', '.join(bundled)}")


def with_resolved_config(argv: Sequence[str]) -> list[str]:
    """`argv` with the value of `--config` (`--config X` or `--config=X`) resolved by `resolve_config`."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == CONFIG_FLAG and i + 1 < len(args):
            args[i + 1] = str(resolve_config(args[i + 1]))
        elif arg.startswith(CONFIG_FLAG + "="):
            args[i] = f"{CONFIG_FLAG}={resolve_config(arg.partition('=')[2])}"
    return args


def run(pipeline: str, argv: Sequence[str]) -> Any:
    """Run the `pipeline` ("curate", "rm" or "grpo") module's `main` with `argv` (its `--config`/`--set` options)."""
    configs_dir()  # a clear error when train/ is not installed
    try:
        module = importlib.import_module(PIPELINES[pipeline])
    except ImportError as exc:  # trl, datasets, peft, pyyaml ...
        raise MissingExtraError(f"{exc}: the training pipelines need: pip install \"codescaler-rerank[train]\"") from exc
    program = sys.argv[0]
    sys.argv[0] = f"codescaler-rerank train {pipeline}"  # the pipeline's usage line names this command
    try:
        return module.main(with_resolved_config(argv))
    finally:
        sys.argv[0] = program
