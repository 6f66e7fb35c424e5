"""rollout=: the config group, vLLM's arguments and refusals, the micro-batch (vlexp.rollout).

The four options compose with every algorithm that generates; `auto` resolves by CUDA; the
vLLM options hand TRL's own config classes their arguments (built as the command builds them)
and refuse, before anything loads, what TRL would refuse or fail on later. The engines' outputs
are tested in test_rollout.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import compose

# --- composition --------------------------------------------------------------------------
ROLLOUTS = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "rollout").glob("*.yaml"))
GENERATING = sorted(
    p.stem
    for p in (Path(__file__).parents[2] / "conf" / "algo").glob("*.yaml")
    if re.search(r"^generates: true", p.read_text(), re.M)
)


def test_rollout_options_are_the_four_engines_and_auto():
    assert ROLLOUTS == ["auto", "hf", "hf_fast", "vllm_colocate", "vllm_server"]


@pytest.mark.parametrize("option", ROLLOUTS)
def test_rollout_option_composes_and_validates(option):
    from vlexp import rollout
    from vlexp.validate import validate

    cfg = compose([f"rollout={option}"])
    validate(cfg, machine=False)
    assert cfg.rollout.name == option
    assert rollout.of(cfg).engine == ("vllm" if option.startswith("vllm") else "hf")


def test_rollout_is_auto_by_default_and_resolves_by_cuda():
    from vlexp import rollout

    for cuda, chosen in ((False, "hf"), (True, "hf_fast")):
        cfg = compose([])
        assert cfg.rollout.name == "auto"
        assert rollout.resolve_auto(cfg, cuda=cuda) == chosen
        # The saved config names the engine and holds that option's own settings.
        assert cfg.rollout == compose([f"rollout={chosen}"]).rollout
        assert rollout.resolve_auto(cfg, cuda=cuda) is None  # resolved once


@pytest.mark.parametrize("algo", GENERATING)
@pytest.mark.parametrize("option", ["hf", "hf_fast"])
def test_rollout_hf_engines_compose_with_every_generating_algorithm(algo, option):
    from vlexp.validate import validate

    validate(compose([f"algo={algo}", f"rollout={option}"]), machine=False)


# --- vLLM: TRL's arguments and the refusals ------------------------------------------------
def test_rollout_vllm_colocate_arguments_reach_trls_config(tmp_path):
    from vlexp.recipe.run import build_args

    cfg = compose(["rollout=vllm_colocate", "rollout.vllm.gpu_memory_utilization=0.35"])
    args = build_args(cfg, tmp_path)  # the GRPOConfig the command builds
    assert type(args).__name__ == "GRPOConfig"
    assert (args.use_vllm, args.vllm_mode) == (True, "colocate")
    assert args.vllm_gpu_memory_utilization == 0.35
    assert args.vllm_enable_sleep_mode is True
    assert args.vllm_importance_sampling_correction is True


def test_rollout_vllm_server_arguments_reach_trls_config(tmp_path):
    from vlexp.recipe.run import build_args

    cfg = compose(["rollout=vllm_server", "rollout.vllm.base_url=http://gpu-7:8000"])
    args = build_args(cfg, tmp_path)
    assert (args.use_vllm, args.vllm_mode) == (True, "server")
    assert args.vllm_server_base_url == "http://gpu-7:8000"
    assert args.vllm_importance_sampling_correction is True
    cfg = compose(["rollout=vllm_server", "rollout.vllm.host=10.0.0.7", "rollout.vllm.port=8123"])
    args = build_args(cfg, tmp_path)
    assert (args.vllm_server_host, args.vllm_server_port) == ("10.0.0.7", 8123)


@pytest.mark.parametrize("algo", ["rloo", "online_dpo"])
def test_rollout_vllm_arguments_for_other_trl_trainers(algo, tmp_path):
    # Only the arguments their TRL config has (RLOOConfig and OnlineDPOConfig have no
    # importance-sampling correction).
    from vlexp.recipe.run import build_args

    cfg = compose(
        [f"algo={algo}", "rollout=vllm_colocate", "rollout.vllm.gpu_memory_utilization=0.3"]
    )
    args = build_args(cfg, tmp_path)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization) == (
        True,
        "colocate",
        0.3,
    )


def test_rollout_hf_leaves_trls_generation_arguments_alone(tmp_path):
    from vlexp.recipe.run import build_args

    for option in ("hf", "hf_fast"):
        args = build_args(compose([f"rollout={option}"]), tmp_path)
        assert args.use_vllm is False


def test_rollout_vllm_range_is_trls(tmp_path):
    # Contract: TRL's own check (trl/import_utils.py, is_vllm_available) names the range.
    import importlib
    import inspect

    from vlexp.rollout import vllm

    source = inspect.getsource(importlib.import_module("trl.import_utils").is_vllm_available)
    low, high = re.search(r'Version\("([\d.]+)"\) <= \w+ <= Version\("([\d.]+)"\)', source).groups()
    assert (low, high) == vllm.VLLM_RANGE


def _fake_vllm(monkeypatch, version: str | None):
    """vllm faked as installed at `version` (None: not installed) for vlexp's checks."""
    from vlexp.rollout import vllm

    real = vllm.importlib.util.find_spec
    monkeypatch.setattr(
        vllm.importlib.util,
        "find_spec",
        lambda name, *a: (object() if version else None) if name == "vllm" else real(name, *a),
    )
    monkeypatch.setattr(vllm.importlib.metadata, "version", lambda name: version)


@pytest.mark.parametrize(
    ("version", "cuda", "expected"),
    [
        (
            None,
            True,
            r"needs the vllm package, which is not installed: pip install 'vllm>=0.22.0,<=0.31.0'",
        ),
        ("0.33.0", True, r"vllm 0.33.0 is installed; TRL 1.16 supports vllm 0.22.0 to 0.31.0"),
        ("0.21.1", True, r"vllm 0.21.1 is installed"),
        ("0.28.0", False, r"needs a CUDA GPU and none is visible: use rollout=hf_fast"),
        ("0.28.0", True, None),
        ("0.31.0.post1", True, None),
    ],
)
def test_rollout_vllm_machine_refusals(monkeypatch, version, cuda, expected):
    from vlexp.validate import ConfigError, machine, validate

    _fake_vllm(monkeypatch, version)
    monkeypatch.setattr(machine, "_cuda_available", lambda: cuda)
    cfg = compose(["rollout=vllm_colocate"])
    if expected is None:
        assert machine.check_rollout_machine(cfg) == []
        return
    with pytest.raises(ConfigError, match=expected):
        validate(cfg)
    if version is not None and cuda:  # out of TRL's range: TRL only warns, so may be tried
        unchecked = compose(["rollout=vllm_colocate", "rollout.vllm.check_version=false"])
        assert machine.check_rollout_machine(unchecked) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["rollout=vllm_server", "rollout.vllm.base_url=gpu-7:8000"],
            r"rollout.vllm.base_url=gpu-7:8000: not an http",
        ),
        (
            ["rollout=vllm_server", "rollout.vllm.port=70000"],
            r"rollout.vllm.port=70000: a TCP port",
        ),
        (
            ["rollout=vllm_colocate", "rollout.vllm.gpu_memory_utilization=1.5"],
            r"gpu_memory_utilization=1.5: a share",
        ),
        (
            ["rollout=vllm_colocate", "rollout.vllm.mode=remote"],
            r"rollout.vllm.mode=remote: must be colocate or server",
        ),
        (
            ["rollout=vllm_colocate", "algo=ppo"],
            r"rollout=vllm_colocate: algo=ppo has no vLLM generation",
        ),
        (
            ["rollout=hf", "rollout.compile=true"],
            r"rollout.compile=true needs rollout.static_cache=true",
        ),
        (
            ["rollout=hf_fast", "rollout.compile=sometimes"],
            r"rollout.compile=sometimes: must be true, false or auto",
        ),
        (
            ["rollout=hf", "rollout.engine=sglang"],
            r"rollout.engine=sglang: must be one of hf, vllm",
        ),
    ],
)
def test_rollout_config_refusals(overrides, expected):
    from vlexp.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=expected):
        validate(compose(overrides), machine=False)


def test_rollout_vllm_share_from_the_planner():
    # The planner's share: more room on a bigger card and with LoRA (no full optimizer
    # states), within the limits.
    from vlexp.rollout import vllm

    gib = 1024**3
    lora = compose(["rollout=vllm_colocate", "model=qwen2_5_vl_3b", "memory=lora"])
    full = compose(["rollout=vllm_colocate", "model=qwen2_5_vl_3b"])
    assert vllm.planned_share(lora, 141 * gib) > vllm.planned_share(lora, 80 * gib)
    assert vllm.planned_share(lora, 141 * gib) > vllm.planned_share(full, 141 * gib)
    for cfg in (lora, full):
        for size in (24, 80, 141):
            assert vllm.SHARE_RANGE[0] <= vllm.planned_share(cfg, size * gib) <= vllm.SHARE_RANGE[1]


# --- the micro-batch, decoupled from the generation batch -----------------------------------
def test_rollout_micro_batch_auto_fits_the_planner_and_keeps_the_generation_batch():
    from vlexp import rollout
    from vlexp.plan import PLAN_DEFAULTS, fits, plan_run

    gib = 1024**3
    overrides = ["model=qwen2_5_vl_3b", "rollout=hf_fast", "train.per_device_train_batch_size=64",
                 "algo.args.num_generations=8", "algo.args.max_completion_length=512"]  # fmt: skip
    cfg = compose(overrides)
    change = rollout.micro_batch(cfg, 80 * gib)
    micro = change["per_device_train_batch_size"]
    assert micro < 64 and 64 % micro == 0
    assert micro * change["gradient_accumulation_steps"] == 64  # rows per optimizer step
    # What `python -m vlexp.plan` says: the chosen micro-batch fits, the next larger does not.
    plan = {**PLAN_DEFAULTS, "gpu_mem_gb": 80}
    bigger = next(m for m in range(micro + 1, 65) if 64 % m == 0)
    for rows, expected in ((micro, True), (bigger, False)):
        accumulate = f"train.gradient_accumulation_steps={64 // rows}"
        pinned = [*overrides[:-3], f"train.per_device_train_batch_size={rows}", accumulate,
                  *overrides[-2:], "rollout.micro_batch=null"]  # fmt: skip
        assert fits(plan_run(pinned, plan)[1], plan) is expected
    assert rollout.micro_batch(cfg, None) == {}  # no GPU: as configured
    assert rollout.micro_batch(compose(["rollout=hf_fast"]), 80 * gib) == {}  # fits already


def test_rollout_micro_batch_number_scales_accumulation_and_steps_per_generation(tmp_path):
    from vlexp.recipe.run import build_args

    cfg = compose(["rollout.micro_batch=2", "train.gradient_accumulation_steps=2",
                   "+algo.args.steps_per_generation=3"])  # fmt: skip
    args = build_args(cfg, tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 8)
    assert args.steps_per_generation == 12  # each generation still makes 8 x 3 rows
    assert args.generation_batch_size == 24


@pytest.mark.parametrize("value", ["3", "0", "many"])
def test_rollout_micro_batch_refusals(value):
    from vlexp.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=rf"rollout.micro_batch={value}: null, auto, or"):
        validate(compose([f"rollout.micro_batch={value}"]), machine=False)
