"""The memory planner: exact on the tensors a run allocates, sane on the real architectures."""

from __future__ import annotations

import pytest

from tests.helpers import compose
from vlexp import plan as planner
from vlexp.recipe import tracking
from vlexp.recipe.estimate import estimate, meta_model

CPU_PLAN = {**planner.PLAN_DEFAULTS, "device": "cpu"}


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class TensorProbe(tracking.MetricsJsonl):
    """metrics.jsonl as usual, plus the tensor bytes held at the first optimizer step."""

    seen: dict[str, int] = {}

    def on_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        if TensorProbe.seen:
            return
        params = list(model.parameters())
        states = [v for s in optimizer.state.values() for v in s.values() if hasattr(v, "numel")]
        TensorProbe.seen = {
            "weights": _bytes(params),
            "gradients": _bytes(p.grad for p in params if p.grad is not None),
            "optimizer": _bytes(states),
        }


@pytest.mark.parametrize(
    "overrides",
    [[], ["memory=lora"], ["model.freeze_vision=true", "algo.args.beta=0.0"]],
    ids=["full", "lora", "frozen-vision-no-ref"],
)
def test_weights_grads_optimizer_equal_the_tiny_run_exactly(
    overrides, tiny_model, tmp_path, monkeypatch
):
    from vlexp.recipe.run import train

    cfg = compose(["train.max_steps=1", "train.per_device_train_batch_size=4", *overrides])
    TensorProbe.seen = {}
    monkeypatch.setattr(tracking, "MetricsJsonl", TensorProbe)
    refs = []
    import trl

    original = trl.GRPOTrainer.__init__

    def keep_ref(self, *args, **kwargs):
        original(self, *args, **kwargs)
        refs.append(self.ref_model)

    monkeypatch.setattr(trl.GRPOTrainer, "__init__", keep_ref)
    train(cfg, tmp_path)

    est = estimate(cfg, CPU_PLAN)
    measured = TensorProbe.seen
    assert measured["gradients"] > 0
    for part in ("weights", "gradients", "optimizer"):
        assert est.parts[part] == measured[part], (part, est.parts, measured)
    ref = refs[0]
    assert est.parts.get("reference model", 0) == (_bytes(ref.parameters()) if ref else 0)
    assert "CUDA context + workspaces" not in est.parts


# Parameter totals Qwen publishes for these checkpoints (model cards / safetensors index).
PUBLISHED = {
    "qwen2_vl_2b": 2_208_985_600,
    "qwen2_5_vl_3b": 3_754_622_976,
    "qwen2_5_vl_7b": 8_292_166_656,
}


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_bundled_configs_build_the_published_architectures(model):
    cfg = compose([f"model={model}"])
    built = meta_model(cfg)
    assert sum(p.numel() for p in built.parameters()) == PUBLISHED[model]
    assert all(p.device.type == "meta" for p in built.parameters())


def test_7b_full_grpo_does_not_fit_80gb_and_a_fitting_switch_is_named(capsys):
    code = planner.main(["model=qwen2_5_vl_7b", "plan.gpu_mem_gb=80"])
    out = capsys.readouterr().out
    assert code == 1
    assert "does NOT fit" in out and "reference model" in out and "generation KV cache" in out
    switch = next(line for line in out.splitlines() if line.startswith("switch to "))
    overrides = switch[len("switch to ") :].split(":")[0].split()
    cfg, est = planner.plan_run(["model=qwen2_5_vl_7b", *overrides], dict(planner.PLAN_DEFAULTS))
    assert planner.fits(est, planner.PLAN_DEFAULTS)


def test_estimate_follows_the_config_knobs():
    base = ["model=qwen2_5_vl_3b", "algo=sft"]
    plain = planner.plan_run(base, dict(planner.PLAN_DEFAULTS))[1].parts
    ckpt = planner.plan_run([*base, "memory.gradient_checkpointing=true"], dict(CPU_PLAN))[1]
    assert ckpt.parts["activations"] < plain["activations"] / 5
    small = planner.plan_run([*base, "model.max_pixels=200704"], dict(CPU_PLAN))[1]
    # 1080x1920 px at 256 x 28 x 28 px: smart_resize keeps the aspect, 14 x 18 tokens.
    assert small.image_tokens == 252 and small.parts["activations"] < plain["activations"]
    two = planner.plan_run(base, {**CPU_PLAN, "images_per_sample": 2})[1]
    assert two.image_tokens == 2 * planner.plan_run(base, dict(CPU_PLAN))[1].image_tokens
    assert two.parts["activations"] > plain["activations"]
    ds = "{zero_optimization: {stage: 3}}"
    zero3 = planner.plan_run(
        [*base, "launcher.num_processes=8", f"memory.deepspeed={ds}"], dict(CPU_PLAN)
    )[1]
    # ZeRO-3 over 8 GPUs: an eighth of the fp32 master weights + moments, sharded weights.
    assert zero3.parts["optimizer"] == zero3.counts.trainable_numel * 12 // 8
    assert zero3.parts["weights"] < plain["weights"] / 4


def test_a_small_job_fits_and_exits_zero(capsys):
    code = planner.main(
        ["model=qwen2_vl_2b", "algo=sft", "memory=lora", "train.per_device_train_batch_size=1"]
    )
    out = capsys.readouterr().out
    assert code == 0 and ": fits" in out and "model=qwen2_vl_2b" in out


def test_unknown_planner_key_is_a_config_error(capsys):
    assert planner.main(["plan.gpu_mem=80"]) == 2
    assert "plan.gpu_mem_gb" in capsys.readouterr().err


# The four peaks of issue #17 (one H200, random-weight Qwen2.5-VL-3B through python -m
# vlexp, GiB), with the runs rebuilt from the issue: SFT rows of 315 tokens = 59 text + the
# 256 image tokens a small image gets at model.min_pixels; GRPO 2 prompts x 8 completions of
# 256 tokens per device step, beta 0.04.
SFT_ROW = ["plan.text_tokens=59", "plan.image_height=224", "plan.image_width=224"]
GRPO = [
    "algo=grpo",
    "train.per_device_train_batch_size=16",
    "algo.args.num_generations=8",
    "algo.args.max_completion_length=256",
    "algo.args.beta=0.04",
]
MEASURED = [
    ("GRPO", [*GRPO, "memory=none"], 124.6),
    ("GRPO + grad ckpt", [*GRPO, "memory=grad_ckpt"], 41.8),
    ("SFT LoRA", ["algo=sft", "memory=lora", "train.per_device_train_batch_size=8"], 25.1),
    ("SFT full", ["algo=sft", "memory=none", "train.per_device_train_batch_size=8"], 61.1),
]


@pytest.mark.parametrize(("name", "overrides", "peak_gib"), MEASURED, ids=[m[0] for m in MEASURED])
def test_planner_is_within_10_percent_of_the_measured_gpu_peaks(name, overrides, peak_gib):
    run, plan = planner.split_args(["model=qwen2_5_vl_3b", *overrides, *SFT_ROW])
    _, est = planner.plan_run(run, {**plan, "gpu_mem_gb": 141})
    assert est.image_tokens == 256 and est.seq_len == 315 + (256 if "algo=grpo" in run else 0)
    error = est.total / planner.GIB / peak_gib - 1
    assert abs(error) < 0.10, f"{name}: planner {est.total / planner.GIB:.1f} GiB vs {peak_gib}"


# Issue 16's peaks (one H200, 2026-11-26, random-weight Qwen3-VL-8B and Qwen3-VL-30B-A3B
# through `python -m vlexp`, bench/results/gpu-NVIDIA_H200-vm-20261126T06*.json; GiB as
# nvidia-smi saw the card): SFT rows of 272 text + 784 image tokens (896x896 px), GRPO
# prompts of 60 text + 256 image tokens. Not fitted on: the structural count as it stands,
# full fine-tuning's factor from the 3B. The dense 8B full fine-tuning peak comes out 13%
# high (the 3B's factor overshoots there), so these are held to 15%.
SFT_ROW_Q3 = ["plan.text_tokens=272", "plan.image_height=896", "plan.image_width=896"]
GRPO_ROW_Q3 = ["plan.text_tokens=60", "plan.image_height=224", "plan.image_width=224"]
MEASURED_QWEN3 = [
    ("8B GRPO LoRA ckpt", ["model=qwen3_vl_8b", *GRPO, "memory=[lora,grad_ckpt]"], 25.5),
    ("30B-A3B GRPO LoRA ckpt", ["model=qwen3_vl_30b_a3b", *GRPO, "memory=[lora,grad_ckpt]"], 64.4),
    ("8B GRPO full ckpt", ["model=qwen3_vl_8b", *GRPO, "memory=grad_ckpt"], 87.6),
    ("8B SFT LoRA", ["model=qwen3_vl_8b", "algo=sft", "memory=lora", "train.per_device_train_batch_size=4"], 60.6),
    ("30B-A3B SFT LoRA", ["model=qwen3_vl_30b_a3b", "algo=sft", "memory=lora", "train.per_device_train_batch_size=4"], 99.5),
    ("8B SFT full", ["model=qwen3_vl_8b", "algo=sft", "memory=none", "train.per_device_train_batch_size=2"], 84.4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "overrides", "peak_gib"), MEASURED_QWEN3, ids=[m[0] for m in MEASURED_QWEN3]
)
def test_planner_is_within_15_percent_of_the_qwen3_vl_gpu_peaks(name, overrides, peak_gib):
    row = GRPO_ROW_Q3 if "algo=grpo" in overrides else SFT_ROW_Q3
    run, plan = planner.split_args([*overrides, *row])
    _, est = planner.plan_run(run, {**plan, "gpu_mem_gb": 139.8})
    assert est.image_tokens == (256 if "algo=grpo" in run else 784)
    error = est.total / planner.GIB / peak_gib - 1
    assert abs(error) < 0.15, f"{name}: planner {est.total / planner.GIB:.1f} GiB vs {peak_gib}"


SMALL_ZERO3 = [
    "model=qwen2_vl_2b",
    "algo=sft",
    "memory=zero3",
    "train.per_device_train_batch_size=1",
]


@pytest.mark.parametrize(("processes", "machines"), [(16, 2), (8, 1), (4, 4)])
def test_world_size_is_the_number_of_ranks_accelerate_starts(processes, machines, capsys):
    # accelerate's own reading of the command vlexp launches: `num_processes` is the total
    # over machines, each machine starts num_processes // num_machines ranks (torchrun's
    # nproc_per_node x nnodes = WORLD_SIZE).
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    from vlexp.recipe import launch

    launcher = [
        "launcher=accelerate",
        f"launcher.num_processes={processes}",
        f"launcher.num_machines={machines}",
        "launcher.main_process_ip=10.0.0.1",
        f"launcher.main_process_port={launch.free_port()}",
    ]
    cfg = compose(launcher)
    argv = launch.accelerate_command(cfg.launcher, "config.resolved.yaml")[3:]
    args = launch_command_parser().parse_args(argv)
    prepare_multi_gpu_env(args)
    accelerate_world = int(getattr(args, "nnodes", None) or 1) * int(args.nproc_per_node)
    assert accelerate_world == processes

    code = planner.main([*SMALL_ZERO3, *launcher])
    out = capsys.readouterr().out
    assert code == 0 and f", {accelerate_world} GPU(s)" in out.splitlines()[0]
    # ZeRO-3 shards the optimizer states over exactly those ranks.
    _, est = planner.plan_run([*SMALL_ZERO3, *launcher], dict(CPU_PLAN))
    assert est.parts["optimizer"] == est.counts.trainable_numel * 12 // accelerate_world


def _algo_files_of_kind(kind: str) -> list[str]:
    import yaml

    from vlexp.paths import config_dir

    files = sorted((config_dir() / "algo").glob("*.yaml"))
    return [f.stem for f in files if yaml.safe_load(f.read_text()).get("kind") == kind]


@pytest.mark.parametrize("algo", _algo_files_of_kind("kto"))
def test_kto_is_planned_as_one_training_sequence_per_row(algo):
    # TRL 1.16's KTOTrainer trains on each row's completion once; the KL estimate (the
    # prompt with its neighbour's completion) and the reference passes run under no_grad.
    import inspect

    from trl import KTOTrainer

    assert "torch.no_grad()" in inspect.getsource(KTOTrainer._compute_kl_logps)
    base = ["model=qwen2_5_vl_3b", "train.per_device_train_batch_size=8"]
    sft = planner.plan_run([*base, "algo=sft"], dict(CPU_PLAN))[1]
    kto = planner.plan_run([*base, f"algo={algo}"], dict(CPU_PLAN))[1]
    assert kto.seq_len == sft.seq_len
    kto_activations = kto.parts["activations"] + kto.parts.get("no-grad passes (KL, reference)", 0)
    assert sft.parts["activations"] <= kto_activations < 1.5 * sft.parts["activations"]
