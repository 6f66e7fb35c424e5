"""The run plan (`vlexp.runplan`): the composed config resolved once, at start-up, into typed
parts. Every entry point starts from it, so they cannot disagree; nothing below the recipe
takes the root config or tells the model family again."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import compose
from tests.unit.test_seams import RANK
from vlexp import runplan

SRC = Path(__file__).resolve().parents[2] / "src" / "vlexp"
# The packages below the recipe's layer (tests/unit/test_seams.py's LAYERS, ranks 1-3).
BELOW_RECIPE = ("data", "models", "rewards", "environments", "algorithms", "evaluation")
# What tells a model's family from its config or checkpoint (vlexp.families); a family from
# a loaded model (`of_model`) or a model_type (`of_model_type`) is a lookup, not a guess.
TELLERS = ("resolve", "of_model_cfg", "model_type_of")


def _calls_of(tree: ast.AST, names: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, name) of each `families.NAME(...)` call, and of `NAME(...)` where NAME was
    imported from vlexp.families."""
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "vlexp.families"
        for alias in node.names
        if alias.name in names
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in names:
            if isinstance(func.value, ast.Name) and func.value.id == "families":
                found.append((node.lineno, func.attr))
        elif isinstance(func, ast.Name) and func.id in imported:
            found.append((node.lineno, func.id))
    return found


def test_the_family_is_told_from_the_config_only_by_the_run_plan():
    """Rule: outside vlexp/families/ (which defines them), only vlexp/runplan.py calls
    `families.resolve`, `of_model_cfg` or `model_type_of`; everything else is handed the
    plan's `family` (or asks a loaded model, `of_model`)."""
    allowed = {Path("runplan.py")}
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] == "families" or rel in allowed:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{rel}:{line} calls {name}" for line, name in _calls_of(tree, TELLERS)]
    assert found == [], "\n".join(found)


def test_no_module_below_the_recipe_takes_the_root_config():
    """Rule: no function defined in data/, models/, rewards/, environments/, algorithms/ or
    evaluation/ has a parameter named `cfg`, vlexp's name for the root config Hydra composes
    (every entry point's `main(cfg)`, `recipe.run.build(cfg, ...)`). Those modules take the
    part they need: a run-plan part (`DataSpec`, `Family`, `Memory`, `Rewards`,
    `Evaluation`) or one config node (`data_cfg`, `model_cfg`, `eval_cfg`, `env`, `bench`).
    config/ is the layer of the nodes' readers (`algo.of(cfg)`, `memory.of(cfg)`) and may."""
    found = []
    for part in BELOW_RECIPE:
        for path in sorted((SRC / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    params = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    if any(p.arg == "cfg" for p in params):
                        found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}(cfg)")
    assert found == [], "\n".join(found)


def test_the_scans_find_what_they_look_for():
    tree = ast.parse(
        "from vlexp.families import model_type_of as told\n"
        "from vlexp import families\n"
        "families.of_model_cfg(m); told('x'); families.of_model(m); other.resolve(m)\n"
    )
    assert [name for _, name in _calls_of(tree, TELLERS)] == ["of_model_cfg", "told"]


# One case per kind of run the parts differ on: the default GRPO, SFT with LoRA, DPO on
# another family, tools (env=) on Qwen3-VL, and in-training evaluation with a reward.
CASES = [
    [],
    ["algo=sft", "memory=lora"],
    ["algo=dpo", "model=tiny_gemma3"],
    ["model=tiny_qwen3_vl", "env=zoom", "data=shapes_zoom"],
    ["train.eval_steps=5", "reward=[accuracy]"],
]


def _evaluate_config(overrides: list[str]):
    """The config `python -m vlexp.evaluate` composes (its own `evaluate.yaml`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import vlexp.evaluate  # noqa: F401  (registers the eval-dir resolver its config names)
    from vlexp.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name="evaluate", overrides=overrides)


def _entry_point_plans(overrides: list[str], tmp_path: Path) -> dict[str, runplan.RunPlan]:
    """The plan each entry point starts from, for the same overrides."""
    from vlexp import app, check_data, evaluate
    from vlexp import plan as planner
    from vlexp.recipe import redact

    plans = {}
    cfg = compose(overrides)
    plans["python -m vlexp"] = app.start(cfg)
    # Each launched rank (and `recipe.run.build`) plans from the resolved file the parent wrote.
    resolved = tmp_path / "config.resolved.yaml"
    resolved.write_text(redact.to_yaml(cfg), encoding="utf-8")
    plans["a launched rank"] = runplan.of(OmegaConf.load(resolved))
    plans["python -m vlexp.plan"] = planner.start(overrides)[1]
    checked = check_data.start(overrides)
    assert not isinstance(checked, int), f"check_data stopped with exit code {checked}"
    plans["python -m vlexp.check_data"] = checked[1]
    plans["python -m vlexp.evaluate"] = evaluate.start(_evaluate_config(overrides), overrides)[1]
    return plans


def _differences(first: runplan.RunPlan, other: runplan.RunPlan) -> list[str]:
    return [
        field.name
        for field in dataclasses.fields(runplan.RunPlan)
        if getattr(first, field.name) != getattr(other, field.name)
    ]


@pytest.mark.parametrize("overrides", CASES, ids=lambda o: " ".join(o) or "default")
def test_every_entry_point_starts_from_the_same_plan(overrides, tmp_path):
    plans = _entry_point_plans(overrides, tmp_path)
    (first_name, first), *others = plans.items()
    for name, plan in others:
        assert _differences(first, plan) == [], f"{name} and {first_name} disagree"
    assert first.family.name == first.model.family  # resolved once, recorded for the ranks


def test_the_plan_parts_are_typed_and_frozen():
    plan = runplan.of(compose(["algo=sft"]))
    assert plan.algorithm.kind == "sft" and plan.data.algorithm is plan.algorithm
    assert plan.data.family is plan.family and plan.data.video.patch_size == plan.family.patch_size
    for part in (plan, plan.data, plan.rewards, plan.paths, plan.memory, plan.evaluation):
        with pytest.raises(dataclasses.FrozenInstanceError):
            part.__setattr__(dataclasses.fields(part)[0].name, None)


def test_a_model_no_family_claims_stops_every_entry_point_with_one_message(tmp_path):
    import json

    from vlexp import check_data
    from vlexp import plan as planner
    from vlexp.validate import ConfigError

    unknown = tmp_path / "llava"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "llava"}))
    overrides = [f"model.name_or_path={unknown}"]
    with pytest.raises(ConfigError, match="'llava' model, which no vlexp family claims"):
        planner.start(overrides)
    assert check_data.start(overrides) == 2


def test_a_reader_following_cfg_from_build_climbs_back_up_the_layers_at_most_6_times():
    """Issue 26's count (tests/cfg_trail.py says how it is measured): on the main of
    2026-12-07 the root config entered 20 modules from `recipe.run.build`, returned to one it
    had left 45 times and climbed back up the layers 18 times; with the run plan the config
    readers (config/) are reached once, from `runplan.of`, and the parts travel instead."""
    from tests.cfg_trail import trail_of

    trail = trail_of(SRC)
    assert "vlexp.runplan:of" in trail.entered  # the trail is followed at all
    assert trail.climbs(RANK) <= 6, trail.entered
    assert not any(step.split(".")[1] in BELOW_RECIPE for step in trail.steps), trail.entered


def test_the_trail_counts_returns_and_climbs():
    from tests.cfg_trail import Trail

    trail = Trail(steps=["vlexp.recipe.run", "vlexp.data.check", "vlexp.recipe.run"])
    trail.steps += ["vlexp.config.algo", "vlexp.recipe.run"]
    assert (trail.modules, trail.returns(), trail.climbs(RANK)) == (3, 2, 2)
