"""Every config option composes; errors come from Hydra; composing imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from tests.helpers import REPO, compose, run_cli
from vlexp.config.algo import KINDS
from vlexp.paths import config_dir, experiments_dir

GROUPS = ("model", "data", "algo", "reward", "memory", "launcher", "logger")
REQUIRED = {"data": {"jsonl": ["data.train=/tmp/train.jsonl"], "hf": ["data.name=json"]}}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("group", "option"), [(g, o) for g in GROUPS for o in _options(g)], ids=lambda v: str(v)
)
def test_every_group_option_composes_and_resolves(group, option):
    extra = REQUIRED.get(group, {}).get(option, [])
    cfg = compose([f"{group}={option}", *extra])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.model.name_or_path and cfg.algo.kind in KINDS
    if group == "algo":
        # TRL's trainers, or vlexp's own where TRL 1.x has none (reward_model, ppo).
        own = ("trl.", "vlexp.")
        assert cfg.algo.trainer._target_.startswith(own) and cfg.algo.trainer._partial_
        assert cfg.algo.args._target_.startswith(own)


@pytest.mark.parametrize("name", sorted(p.stem for p in experiments_dir().glob("*.yaml")))
def test_every_experiment_composes(name):
    # hydra-core 1.3.8's glob(*) misses groups from a search path: list the files instead.
    cfg = compose([f"experiment={name}"])
    OmegaConf.resolve(cfg)


def test_experiment_overrides_root_keys():
    assert compose([]).train.max_steps == 150
    assert compose(["experiment=shapes_grpo"]).train.max_steps == 300


def test_rewards_compose_with_weights():
    cfg = compose(["reward=[think_format,accuracy]", "reward.weights.accuracy=2.0"])
    assert list(cfg.reward.funcs) == ["think_format", "accuracy"]
    assert dict(cfg.reward.weights) == {"think_format": 1.0, "accuracy": 2.0}


def test_unknown_option_lists_the_valid_ones():
    result = run_cli("model=nope")
    assert result.returncode != 0
    assert result.stderr.startswith("vlexp: model=nope: nope is not an option of model")
    for option in _options("model"):
        assert option in result.stderr


def test_typo_in_a_key_is_rejected_by_hydra():
    result = run_cli("train.max_stepz=3")
    assert result.returncode != 0
    assert "max_stepz" in result.stderr


def test_unknown_experiment_lists_the_presets():
    result = run_cli("experiment=nope")
    assert result.returncode != 0 and "shapes_grpo" in result.stderr


def test_config_errors_stop_before_loading_anything():
    result = run_cli("algo.args.num_generations=3", "hydra.run.dir=/tmp/vlexp-never-made")
    assert result.returncode != 0
    assert "vlexp: config error" in result.stderr and "num_generations" in result.stderr
    assert "Traceback" not in result.stderr


HEAVY = ("torch", "transformers", "trl", "peft", "deepspeed")


def test_import_and_cfg_job_stay_light():
    probe = (
        "import sys, runpy\n"
        "import vlexp, vlexp.app, vlexp.rewards, vlexp.data.shapes\n"
        "sys.argv = ['vlexp', '--cfg', 'job']\n"
        "try:\n    runpy.run_module('vlexp', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "algo:" in out and "HEAVY []" in out
