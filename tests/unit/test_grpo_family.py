"""The GRPO-family algorithm files, prompt presets and the vLLM check (no model loaded)."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import compose, run_cli
from vlexp.paths import config_dir
from vlexp.validate import ConfigError, check_vllm, validate

FAMILY = ("grpo", "dapo", "dr_grpo", "gspo", "cispo", "sapo", "bnpo", "luspo", "vespo")
# The knobs that define the GRPO-family loss in TRL 1.16 (GRPOConfig); each file sets them all
# itself, so neither a TRL default change nor another file can change its algorithm.
LOSS_KNOBS = (
    "loss_type",
    "beta",
    "use_bias_correction_kl",
    "epsilon",
    "epsilon_high",
    "delta",
    "importance_sampling_level",
    "scale_rewards",
    "multi_objective_aggregation",
    "mask_truncated_completions",
    "top_entropy_quantile",
    "entropy_coef",
    "off_policy_mask_threshold",
    "num_iterations",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "top_k",
    "use_vllm",
)
EXPECTED = {
    "grpo": dict(loss_type="grpo", beta=0.04, scale_rewards="group", epsilon_high=0.2),
    "dapo": dict(loss_type="dapo", beta=0.0, epsilon_high=0.28, mask_truncated_completions=True),
    "dr_grpo": dict(loss_type="dr_grpo", beta=0.0, scale_rewards="none"),
    "gspo": dict(loss_type="grpo", beta=0.0, importance_sampling_level="sequence"),
    # CISPO's epsilon_high is the absolute cap on the importance weight (ScaleRL: 5.0), not 1 + eps.
    "cispo": dict(loss_type="cispo", beta=0.0, epsilon_high=5.0, importance_sampling_level="token"),
    "sapo": dict(loss_type="sapo", beta=0.0, sapo_temperature_pos=1.0, sapo_temperature_neg=1.05),
    "bnpo": dict(loss_type="bnpo", beta=0.04, epsilon=0.2, epsilon_high=0.2),
    "luspo": dict(loss_type="luspo", beta=0.0, importance_sampling_level="sequence"),
    "vespo": dict(
        loss_type="vespo",
        beta=0.0,
        importance_sampling_level="token",
        vespo_k_pos=2.0,
        vespo_lambda_pos=3.0,
        vespo_k_neg=3.0,
        vespo_lambda_neg=2.0,
    ),
}
# Knobs only some losses read; the file of such a loss sets them itself too.
OWN_KNOBS = {
    "sapo": ("sapo_temperature_pos", "sapo_temperature_neg"),
    "vespo": ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"),
}


def _raw(name: str) -> dict:
    return yaml.safe_load((config_dir() / "algo" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", FAMILY)
def test_every_family_file_sets_every_loss_knob_itself(name):
    raw = _raw(name)
    assert "defaults" not in raw  # no inheritance: the file alone defines the algorithm
    missing = [k for k in (*LOSS_KNOBS, *OWN_KNOBS.get(name, ())) if k not in raw["args"]]
    assert not missing, f"algo/{name}.yaml leaves {missing} to TRL's defaults"
    assert raw["kind"] == "grpo" and raw["trainer"]["_target_"] == "trl.GRPOTrainer"
    assert (raw["generates"], raw["groups"], raw["reference"]) == (True, True, "beta")
    for key, value in EXPECTED[name].items():
        assert raw["args"][key] == value, key


@pytest.mark.parametrize("name", FAMILY)
def test_family_files_build_a_grpo_config_trl_accepts(name, tmp_path):
    from vlexp.recipe.run import build_args

    cfg = compose([f"algo={name}", "algo.args.top_entropy_quantile=0.2"])
    args = build_args(cfg, tmp_path)
    assert type(args).__name__ == "GRPOConfig"
    for key, value in EXPECTED[name].items():
        assert getattr(args, key) == value, key
    assert args.top_entropy_quantile == 0.2  # a knob on any of them
    assert args.reward_weights == [1.0, 1.0]


def test_prompt_presets_set_the_template_only():
    plain = compose([])
    think = compose(["prompt=think"])
    direct = compose(["prompt=direct", "data=jsonl", "data.train=/x.jsonl"])
    assert plain.data.prompt_template == "{question}"
    assert think.data.prompt_template.startswith(
        "{question} Output the thinking process in <think>"
    )
    assert "<answer> </answer>" in think.data.prompt_template
    assert direct.data.prompt_template == "{question} Please directly output the answer."
    assert direct.data.name == "jsonl" and direct.data.system_prompt is None
    assert compose(
        ["prompt=think", "data.prompt_template='Q: {question}'"]
    ).data.prompt_template == ("Q: {question}")


def test_prompt_template_reaches_the_prompt(tmp_path):
    from vlexp.data.records import Record, prompt_messages

    template = compose(["prompt=direct"]).data.prompt_template
    record = Record("x.jsonl:1", {"prefix": "What colour is the circle?"}, tmp_path)
    text = prompt_messages(record, 1, template, None)[0]["content"][-1]["text"]
    assert text == "What colour is the circle? Please directly output the answer."


def test_vllm_off_needs_nothing():
    assert check_vllm(compose([])) == []


def test_vllm_without_the_package_stops_with_the_fix(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    (problem,) = check_vllm(compose(["algo.args.use_vllm=true"]))
    assert "needs the vllm package" in problem and "use_vllm=false" in problem


def test_vllm_without_cuda_stops_with_the_fix(monkeypatch):
    import torch

    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())  # "installed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (problem,) = check_vllm(compose(["algo.args.use_vllm=true", "algo.args.vllm_mode=server"]))
    assert "(vllm_mode=server) needs a CUDA GPU" in problem and "use_vllm=false" in problem


def test_vllm_mode_must_be_known():
    cfg = compose(["algo.args.use_vllm=true", "algo.args.vllm_mode=remote"])
    assert check_vllm(cfg) == ["algo.args.vllm_mode=remote: must be one of colocate, server"]


def test_on_error_must_be_known():
    with pytest.raises(ConfigError, match="reward.on_error=ignore: must be one of raise, zero"):
        validate(compose(["reward.on_error=ignore"]))


def test_vllm_request_on_this_machine_stops_before_loading_anything(tmp_path):
    # Without a GPU or vllm the run must stop at validation, not deep inside TRL.
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") and torch.cuda.is_available():
        pytest.skip("this machine can run vLLM")
    run_dir = tmp_path / "never"
    result = run_cli("algo=dapo", "algo.args.use_vllm=true", f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert (
        "vlexp: config error: algo.args.use_vllm=true (vllm_mode=colocate) needs" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (run_dir / "config.resolved.yaml").exists()


def test_reference_model_is_named_through_a_deepspeed_engine():
    """Under ZeRO-3 TRL hands the reference model to DeepSpeed: its engine's config is a dict."""
    from types import SimpleNamespace

    from vlexp.algorithms.grpo import reference_model

    inner = SimpleNamespace(config=SimpleNamespace(_name_or_path="/models/tiny"))
    engine = SimpleNamespace(module=inner, config={"zero_optimization": {"stage": 3}})
    trainer = SimpleNamespace(beta=0.04, model=SimpleNamespace(), ref_model=engine)
    assert reference_model(trainer) == "a separate copy of /models/tiny"
    trainer.ref_model = inner
    assert reference_model(trainer) == "a separate copy of /models/tiny"


@pytest.mark.parametrize(("name", "normalized"), [("rloo", False), ("reinforce_pp", True)])
def test_rloo_files_build_an_rloo_config(name, normalized, tmp_path):
    from vlexp.config import algo as algorithm
    from vlexp.recipe.run import build_args

    raw = _raw(name)
    missing = [k for k in RLOO_KNOBS if k not in raw["args"]]
    assert not missing, f"algo/{name}.yaml leaves {missing} to TRL's defaults"
    cfg = compose([f"algo={name}"])
    facts = algorithm.of(cfg)
    assert (facts.kind, facts.generates, facts.groups, facts.uses_reference()) == (
        "grpo",
        True,
        True,
        True,
    )
    args = build_args(cfg, tmp_path)
    assert type(args).__name__ == "RLOOConfig"
    assert args.normalize_advantages is normalized
    assert args.reward_weights == [1.0, 1.0]
    # The GRPO batch rule holds for RLOO's groups too (no name test decides it).
    bad = compose([f"algo={name}", "train.per_device_train_batch_size=6"])
    assert "is not a multiple of algo.args.num_generations" in validate_problems(bad)


RLOO_KNOBS = (
    "beta",
    "epsilon",
    "epsilon_high",
    "normalize_advantages",
    "reward_clip_range",
    "mask_truncated_completions",
    "num_iterations",
    "num_generations",
    "max_completion_length",
    "temperature",
    "top_p",
    "top_k",
    "use_vllm",
)


def validate_problems(cfg) -> str:
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    return str(err.value)


def test_distill_declares_a_teacher_and_no_rewards(tmp_path):
    from vlexp import runplan
    from vlexp.config import algo as algorithm
    from vlexp.recipe.run import algorithm_inputs, build_args

    teacher = tmp_path / "teacher_run"
    (teacher / "final").mkdir(parents=True)
    (teacher / "final" / "config.json").write_text("{}")
    cfg = compose(["algo=distill", f"teacher.name_or_path={teacher}"])
    facts = algorithm.of(cfg)
    assert (facts.kind, facts.generates, facts.rewards, facts.groups) == (
        "grpo",
        True,
        False,
        False,
    )
    assert not facts.uses_reference()
    validate(cfg)  # a run dir stands for its final/ model
    assert algorithm_inputs(cfg, runplan.of(cfg)) == {"teacher_model": str(teacher / "final")}
    args = build_args(cfg, tmp_path / "run")
    assert type(args).__name__ == "DistillationConfig"
    assert (args.beta, args.temperature) == (1.0, 1.0)
    assert args.teacher_model_init_kwargs == {"dtype": "float32"}  # the student's dtype


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (None, "teacher.name_or_path is not set"),
        ("teacher.name_or_path=/no/such/run", "not a model (it does not exist)"),
    ],
)
def test_distill_without_a_usable_teacher_stops_before_loading(override, message):
    cfg = compose(["algo=distill", *([override] if override else [])])
    assert message in validate_problems(cfg)


@pytest.mark.parametrize(
    ("name", "trainer"), [("orpo", "ORPOTrainer"), ("simpo", "CPOTrainer"), ("cpo", "CPOTrainer")]
)
def test_reference_free_preference_files_use_the_image_adapter(name, trainer):
    from vlexp.config import algo as algorithm

    cfg = compose([f"algo={name}"])
    validate(cfg)  # nothing declares them unavailable any more
    assert cfg.algo.trainer._target_ == f"vlexp.algorithms.preference.{trainer}"
    assert not algorithm.of(cfg).uses_reference() and algorithm.of(cfg).kind == "dpo"


def test_an_algo_file_declared_unavailable_stops_with_its_reason():
    # The seam stays for files whose trainer cannot run here (e.g. a text-only TRL trainer).
    cfg = compose(["algo=dpo", "+algo.unavailable=its trainer takes no images"])
    assert "algo=dpo cannot run: its trainer takes no images" in validate_problems(cfg)


@pytest.mark.parametrize("module", ["orpo", "cpo"])
def test_trl_text_only_trainers_still_refuse_a_vlm_processor(module, tiny_model):
    # Why vlexp.algorithms.preference exists, checked against TRL itself: when a TRL upgrade
    # makes these trainers take a processor, this fails and the adapter can be reconsidered.
    import importlib

    from transformers import AutoModelForImageTextToText, AutoProcessor

    trl_module = importlib.import_module(f"trl.experimental.{module}")
    cls = getattr(trl_module, f"{module.upper()}Trainer")
    config = getattr(trl_module, f"{module.upper()}Config")(
        output_dir="/tmp/unused", report_to=[], use_cpu=True, bf16=False
    )
    processor = AutoProcessor.from_pretrained(tiny_model)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model)
    with pytest.raises(AttributeError, match="pad_token_id"):
        cls(model=model, args=config, train_dataset=[{}], processing_class=processor)


def test_geometry_preset_compares_four_losses_with_everything_else_shared():
    from vlexp.paths import experiments_dir

    raw = yaml.safe_load((experiments_dir() / "geometry3k_rl.yaml").read_text())
    algos = raw["hydra"]["sweeper"]["params"]["algo"].split(",")
    assert algos == ["grpo", "dapo", "cispo", "sapo"]
    shared = None
    for name in algos:
        cfg = compose(["experiment=geometry3k_rl", f"algo={name}"])  # one sweep job
        assert cfg.algo.name == name and cfg.algo.args.loss_type == name
        assert (cfg.algo.args.num_generations, cfg.algo.args.max_completion_length) == (8, 1024)
        rest = {key: cfg[key] for key in ("model", "data", "train", "reward")}
        assert shared in (None, rest)
        shared = rest
