"""YAML configs for the pipelines: a dataclass per pipeline, filled from `--config FILE` and `--set key=value`."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """`cls` from a YAML mapping, then `key=value` overrides (values parsed as YAML); unknown keys are errors."""
    data: dict[str, Any] = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}) if path else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        data[key] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():  # YAML reads 3e-4 (no dot) as a string
        if isinstance(value, str) and hints[key] in (float, float | None):
            data[key] = float(value)
    return cls(**data)


def parse_args(cls: type[T], description: str, argv: Sequence[str] | None = None) -> T:
    """The command line every pipeline shares: `--config FILE [--set key=value ...]`; `--help` lists the keys."""
    keys = "\n".join(f"  {f.name} (default {f.default!r})" for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                     if f.default is not dataclasses.MISSING)
    parser = argparse.ArgumentParser(
        description=description, epilog=f"config keys:\n{keys}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, required=True, help="YAML file with the config keys below")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key (repeatable), e.g. --set learning_rate=1e-5")
    args = parser.parse_args(argv)
    return load_config(cls, args.config, args.overrides)
