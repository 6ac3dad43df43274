"""`codescaler-rerank train curate|rm|grpo`: the bundled configs resolve by name, and the wheel ships train/."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from codescaler_rerank.cli import main
from codescaler_rerank.train_cli import bundled_configs, configs_dir, resolve_config, with_resolved_config

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("yaml", reason="the train pipelines read YAML configs (train extra)")


@pytest.mark.parametrize("pipeline", ["curate", "rm", "grpo"])
def test_train_help_is_the_pipelines_own(pipeline, capsys):
    if pipeline != "curate":
        pytest.importorskip("trl", reason="the rm and grpo pipelines need trl (train extra)")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", pipeline, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: codescaler-rerank train {pipeline} [-h] --config CONFIG")
    assert "config keys:" in out and "output_dir" in out


def test_bundled_configs_resolve_by_name(tmp_path, monkeypatch, capsys):
    names = bundled_configs()
    assert {"curate_smoke", "rm_smoke", "grpo_smoke", "rm_8b_lora"} <= set(names)
    assert resolve_config("rm_smoke") == resolve_config("rm_smoke.yaml") == configs_dir() / "rm_smoke.yaml"
    assert resolve_config("rm_smoke").read_text() == (ROOT / "train" / "configs" / "rm_smoke.yaml").read_text()
    own = tmp_path / "rm_smoke.yaml"  # a file of that name in the working directory wins
    own.write_text("seed: 1\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config("rm_smoke.yaml") == Path("rm_smoke.yaml")
    assert with_resolved_config(["--config=grpo_smoke", "--set", "seed=2"]) == [
        f"--config={configs_dir() / 'grpo_smoke.yaml'}", "--set", "seed=2"]
    with pytest.raises(FileNotFoundError, match="bundled: .*curate_smoke"):
        resolve_config("no_such_config")
    assert main(["train", "curate", "--config", "nope/curate_smoke"]) == 1  # a path that is not there: no fallback
    assert "no config file 'nope/curate_smoke'" in capsys.readouterr().err
    assert main(["train", "--list-configs", "curate"]) == 0
    assert capsys.readouterr().out.split() == list(names)


def test_train_curate_runs_a_bundled_config_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "curate", "--config", "curate_smoke", "--set", "max_problems=2",
                 "--set", "eval_problems=[]", "--set", "eval_fraction=0.5"]) == 0
    summary = json.loads((tmp_path / "runs" / "smoke" / "curate" / "summary.json").read_text())
    assert summary["config"]["max_candidates"] == 16 and summary["config"]["max_problems"] == 2
    assert summary["train"]["candidates"] > 0


def test_the_wheel_ships_train_with_its_configs(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("codescaler_rerank-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"train/configs/{p.name}" for p in (ROOT / "train" / "configs").glob("*.yaml")}
    assert {"train/__init__.py", "train/curate.py", "train/grpo.py", "train/reward_model.py",
            "codescaler_rerank/train_cli.py", "train/configs/accelerate/zero3.yaml"} | configs <= names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
