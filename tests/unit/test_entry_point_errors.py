"""Every `python -m vlexp...` entry point answers a bad override with one vlexp line and a
non-zero exit status: no traceback, no Hydra text ("Set the environment variable
HYDRA_FULL_ERROR=1 ..."), and "did you mean" for a misspelt key or group option."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from vlexp import overrides

SRC = REPO / "src"
# Modules a user runs with `python -m` (they end in a `__main__` guard), found in the source
# so a new entry point gets its row. vlexp.worker is started by vlexp's own launcher with the
# resolved config file of a run, never with words typed by a person.
INTERNAL = {"vlexp.worker"}
ENTRY_POINTS = sorted(
    ".".join(path.relative_to(SRC).with_suffix("").parts)
    for path in (SRC / "vlexp").rglob("*.py")
    if '__name__ == "__main__"' in path.read_text(encoding="utf-8") and path.name != "__main__.py"
)
ENTRY_POINTS = [
    "vlexp" if module == "vlexp.app" else module
    for module in ENTRY_POINTS
    if module not in INTERNAL
]
# Take directories, not overrides: a `key=value` word is named in their one line.
NO_OVERRIDES = {"vlexp.compare", "vlexp.models.tiny"}
# (arguments, what the line must say): an unknown key, a misspelt key, an unknown group
# option, a value of the wrong type, `+` for a key that exists.
BAD = {
    "unknown key": (["nosuchkey.deep=1"], "nosuchkey.deep is not a key of the config"),
    "misspelt key": (["train.max_step=2"], "did you mean train.max_steps=2?"),
    "group option": (["algo=grop"], "algo=grop: grop is not an option of algo: did you mean grpo?"),
    "value type": (["train.max_steps=abc"], "train.max_steps takes a number"),
    "plus misuse": (["+train.max_steps=2"], "drop the + to change it (train.max_steps=2)"),
}


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={**os.environ, "HYDRA_FULL_ERROR": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_user_entry_point_is_found():
    assert {"vlexp", "vlexp.plan", "vlexp.check_data", "vlexp.evaluate"} <= set(ENTRY_POINTS)
    assert set(ENTRY_POINTS) >= NO_OVERRIDES


@pytest.mark.parametrize("bad", BAD, ids=list(BAD))
@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_a_bad_override_is_one_vlexp_line_and_a_failing_exit_status(module, bad, tmp_path):
    args, said = BAD[bad]
    run_dir = tmp_path / "run"
    done = run_module(
        module, *args, *([] if module in NO_OVERRIDES else [f"hydra.run.dir={run_dir}"])
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0, lines
    assert "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("vlexp"), lines
    key = args[0].partition("=")[0].lstrip("+")
    assert key in lines[0]
    if module not in NO_OVERRIDES:
        assert lines[0].startswith("vlexp: ") and said in lines[0], lines[0]
    assert not run_dir.exists()  # stopped before Hydra made a run dir


def test_every_key_the_config_lacks_is_named_with_the_closest_one():
    assert overrides.problem(["train.max_step=3", "nosuchkey=1"]) == (
        "vlexp: train.max_step is not a key of the config (nor is nosuchkey): "
        "did you mean train.max_steps=3?"
    )
    assert overrides.problem(["nosuchkey=1"], "evaluate", "python -m vlexp.evaluate") == (
        "vlexp: nosuchkey is not a key of the config (python -m vlexp.evaluate --cfg job "
        "prints them all)"
    )


def config_groups() -> dict[str, list[str]]:
    """Every config group vlexp ships (the folders of conf/, experiments/) and its options."""
    groups = {
        str(folder.relative_to(REPO / "conf")): sorted(p.stem for p in folder.glob("*.yaml"))
        for folder in (REPO / "conf").rglob("*")
        if folder.is_dir() and any(folder.glob("*.yaml"))
    }
    groups["experiment"] = sorted(p.stem for p in (REPO / "experiments").glob("*.yaml"))
    return groups


@pytest.mark.parametrize("group", sorted(config_groups()))
def test_a_misspelt_group_option_gets_did_you_mean(group):
    options = config_groups()[group]
    option = options[len(options) // 2]
    typo = option + option[-1]  # closer to the option than to any other name
    line = overrides.problem([f"{group}={typo}"])
    assert line is not None and line.startswith(f"vlexp: {group}={typo}: "), line
    assert f"did you mean {option}?" in line and "\n" not in line


def test_every_value_of_a_sweep_is_checked_and_good_ones_pass():
    assert overrides.problem(["-m", "train.max_steps=1,2", "algo=grpo,sft"]) is None
    assert "did you mean grpo?" in overrides.problem(["-m", "algo=sft,grop"])
    assert "takes a number" in overrides.problem(["-m", "train.max_steps=2,abc"])
    assert overrides.problem(["-m", "algo.args.beta=interval(0.0,0.1)", "algo=glob(*)"]) is None
    assert overrides.problem(["--cfg", "job", "algo=sft", "train.learning_rate=1e-5"]) is None
    assert overrides.problem(["train.max_steps=${seed}", "train.eval_steps=null"]) is None


def test_options_of_a_users_own_config_folder_count(tmp_path):
    """`hydra.searchpath=[file://DIR]` (README, Rewards) adds options: suggested, and accepted."""
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "short_answer.yaml").write_text(
        "# @package reward\nweights:\n  short_answer: 0.5\n"
    )
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    assert overrides.problem([searchpath, "reward=[think_format,short_answer]"]) is None
    line = overrides.problem([searchpath, "reward=[think_format,short_answr]"])
    assert "did you mean short_answer?" in line


# The entry points that build a processor from the model and data overrides.
PROCESSOR_ENTRY_POINTS = ["vlexp", "vlexp.check_data", "vlexp.evaluate"]


def no_tool_template_preset() -> str:
    """The tiny build of a family whose chat template renders no tool calls (TRL's own check)
    and for which vlexp has no tool template, read from the family table."""
    from trl.chat_template_utils import supports_tool_calling

    from tests.helpers import compose, tiny_families, tiny_preset
    from vlexp import families
    from vlexp.models.loading import load_processor

    for name in tiny_families():
        family = families.FAMILIES[name]
        if family.tool_template is not None or family.packed_images:
            continue
        model_cfg = compose([f"model={tiny_preset(name)}"]).model
        if not supports_tool_calling(load_processor(model_cfg, family)):
            return tiny_preset(name)
    pytest.skip("every family with a tiny build renders tool calls")


@pytest.mark.parametrize("module", PROCESSOR_ENTRY_POINTS)
def test_env_on_a_template_without_tool_calls_is_one_vlexp_line(module, tmp_path):
    preset = no_tool_template_preset()
    done = run_module(
        module, f"model={preset}", "env=zoom", "data=shapes_zoom", f"hydra.run.dir={tmp_path}"
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1, lines
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[-1].startswith(f"{module}: ") and "renders no tool calls" in lines[-1], lines
