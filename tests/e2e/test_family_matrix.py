"""The family x algorithm matrix on the tiny builds: every algorithm (SFT, DPO, GRPO and the
rest of the GRPO family, reward model, PPO) with full fine-tuning and with LoRA, videos,
evaluation with its gallery, and resume, on every new family.

Each case is a short real run (`vlexp.recipe.run.train`, what `python -m vlexp` calls) that
must log its algorithm's numbers, log the router's load-balancing loss on the
mixture-of-experts builds, and leave a `final/` that reloads. The matrix is slow (104 tests
of short runs with LLaVA-OneVision's 14: about 9 minutes on 2 cores before them, its 14 took
12 minutes on 2 shared cores); the families come from the family table (every tiny build but
the default model's). GRPO's full fine-tune also generates from its final/ with plain
transformers. One fast check: PPO stops on video data before loading.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO, compose, read_metrics, run_cli, tiny_families, tiny_preset
from vlexp.families import FAMILIES as TABLE

# Every family with a tiny build but the default model's (run everywhere else), from the
# family table: a new row joins the matrix by itself.
FAMILIES = tiny_families(default=False)
VIDEO_FAMILIES = tiny_families(video=True, default=False)  # the others stop before loading
MOE = {name for name in FAMILIES if TABLE[name].expert_parameters}
ONE_STEP = ["train.max_steps=1", "train.save_steps=1000", "data.prepare.num_train=64"]
RULES = "reward=[think_format,accuracy]"
# algo: (extra overrides, a number it must log, the MoE router-loss metrics it must log)
ALGOS = {
    "sft": ([], "loss", ["aux_loss"]),
    "dpo": ([], "rewards/margins", ["aux_loss"]),
    "grpo": ([RULES], "reward", ["aux_loss"]),
    "reward_model": ([], "accuracy", ["aux_loss"]),
    # One PPO epoch per rollout: one optimizer step per rollout; the critic has a router too.
    "ppo": ([RULES, "algo.args.ppo_epochs=1"], "loss/value", ["aux_loss", "val/aux_loss"]),
}


def refused(family: str, algo: str) -> str | None:
    """Why the family's images cannot go through the algorithm's trainer (MiniCPM-V's packed
    images through a trainer that cuts them by row: vlexp.algorithms.packed_images), or None."""
    from hydra.utils import get_class

    from vlexp.algorithms.packed_images import refusal

    if not TABLE[family].packed_images:
        return None
    return refusal(TABLE[family], get_class(compose([f"algo={algo}"]).algo.trainer._target_))


def train_run(overrides: list[str], run_dir) -> list[dict]:
    from vlexp.recipe.run import train
    from vlexp.validate import validate

    cfg = compose(overrides)
    validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    train(cfg, run_dir)
    return read_metrics(run_dir)


def reload(final, algo: str, family: str) -> None:
    """final/ loads as a user loads it: the value-head model for a reward model, the VLM
    (with its adapter on the run's base for LoRA) for the rest; PPO also keeps its critic."""
    from transformers import AutoModelForImageTextToText

    from vlexp.algorithms.reward_model import is_value_model, load_reward_model

    lora = (final / "adapter_config.json").is_file()
    if algo == "reward_model":
        model = load_reward_model(final)
        assert is_value_model(model) and model.config.model_type == family
        return
    if lora:
        from peft import PeftModel

        base = json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), final)
    else:
        model = AutoModelForImageTextToText.from_pretrained(final)
    assert model.config.model_type == family
    if family in MOE:  # the router logits are asked per forward, never saved switched on
        assert model.config.get_text_config().output_router_logits is False
    if algo == "ppo":
        critic = final / "critic"
        assert (critic / ("adapter_config.json" if lora else "config.json")).is_file()


def generate_from(final) -> str:
    """final/ as plain transformers loads it, generating from two images of different shapes
    (left-padded batch); the completion's text."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(final)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(final)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Count."}]}
    prompt = processor.apply_chat_template([message], add_generation_prompt=True, tokenize=False)
    images = [[Image.new("RGB", (96, 64), "red")], [Image.new("RGB", (64, 96), "blue")]]
    inputs = processor(text=[prompt, prompt], images=images, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():  # a batch of two: MoE generate() breaks on router logits if left on
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])


# What GRPO logs besides the reward, each finite on every family.
GRPO_NUMBERS = ("kl", "entropy", "completions/mean_length")


@pytest.mark.slow  # 50 one-step runs, ~25 minutes on 2 cores
@pytest.mark.parametrize("memory", ["none", "lora"])
@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_algorithm_on_every_family(family, algo, memory, tmp_path, shapes_dir):
    if reason := refused(family, algo):
        pytest.skip(reason)  # the run stops before loading, with this reason
    extra, number, router = ALGOS[algo]
    overrides = [
        f"model={tiny_preset(family)}",
        f"algo={algo}",
        f"memory={memory}",
        *extra,
        *ONE_STEP,
    ]
    rows = train_run(overrides, tmp_path)
    assert [row["step"] for row in rows] == [1]
    assert math.isfinite(rows[0][number]), rows[0]
    for name in router:
        assert (name in rows[0]) == (family in MOE), (name, rows[0])
        if family in MOE:
            assert rows[0][name] > 0, (name, rows[0])
    reload(tmp_path / "final", algo, family)
    if algo == "grpo":
        assert all(math.isfinite(rows[0][name]) for name in GRPO_NUMBERS), rows[0]
        assert 0.0 <= rows[0]["rewards/think_format/mean"] <= 1.0
        if memory == "none":
            generate_from(tmp_path / "final")


@pytest.mark.slow  # 2 one-step runs
@pytest.mark.parametrize("algo", ["reward_model", "ppo"])
def test_router_loss_weight_zero_turns_it_off(algo, tmp_path, shapes_dir):
    """vlexp's own trainers follow algo.args.router_aux_loss_coef as TRL's do."""
    extra, number, _ = ALGOS[algo]
    overrides = ["model=tiny_qwen3_vl_moe", f"algo={algo}", *extra, *ONE_STEP]
    rows = train_run([*overrides, "algo.args.router_aux_loss_coef=0.0"], tmp_path)
    assert math.isfinite(rows[0][number])
    assert not any("aux_loss" in name for name in rows[0]), rows[0]


# The GRPO family past plain GRPO: each on a different family (all run on the default tiny
# model in test_grpo_family_runs.py); the MoE builds take the ones with their own trainer.
GRPO_FAMILY = {
    "qwen3_vl": ["dapo", "gspo"],
    "qwen3_vl_moe": ["rloo", "dr_grpo", "cispo"],
    "qwen3_5": ["bnpo", "sapo"],
    "qwen3_5_moe": ["reinforce_pp", "luspo", "vespo"],
    "gemma3": ["dapo", "rloo"],
}
GRPO_FAMILY_OTHERS = ["dapo", "rloo"]  # a family not named above (a new row)


@pytest.mark.slow  # 12 one-step runs
@pytest.mark.parametrize(
    "family, algo",
    [(f, a) for f in FAMILIES for a in GRPO_FAMILY.get(f, GRPO_FAMILY_OTHERS)],
)
def test_the_grpo_family_on_every_family(family, algo, tmp_path, shapes_dir):
    rows = train_run([f"model={tiny_preset(family)}", f"algo={algo}", RULES, *ONE_STEP], tmp_path)
    assert [row["step"] for row in rows] == [1]
    assert math.isfinite(rows[0]["reward"]) and "rewards/accuracy/mean" in rows[0]
    assert ("aux_loss" in rows[0]) == (family in MOE), rows[0]
    reload(tmp_path / "final", algo, family)


@pytest.mark.slow  # 16 one-step runs on short clips
@pytest.mark.parametrize("algo", ["sft", "dpo", "grpo", "reward_model"])
@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_videos_on_every_video_family(family, algo, tmp_path):
    extra, number, _ = ALGOS[algo]
    overrides = [
        f"model={tiny_preset(family)}",
        f"algo={algo}",
        "data=shapes_video",
        *extra,
        *ONE_STEP,
    ]
    rows = train_run(overrides, tmp_path)
    assert [row["step"] for row in rows] == [1]
    assert math.isfinite(rows[0]["loss"]) and math.isfinite(rows[0][number]), rows[0]
    assert ("aux_loss" in rows[0]) == (family in MOE), rows[0]
    reload(tmp_path / "final", algo, family)


def test_ppo_refuses_video_data_before_loading(tmp_path):
    """vlexp's PPO rollouts generate from images only (algo.videos=false in ppo.yaml)."""
    result = run_cli(
        "model=tiny_qwen3_vl", "algo=ppo", "data=shapes_video", RULES, f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "records with videos and algo=ppo: its trainer reads images only" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "final").exists()


def check_gallery(eval_dir, prompts: int) -> None:
    """samples.jsonl holds one completion per prompt; samples.html embeds each image."""
    samples = (eval_dir / "samples.jsonl").read_text().splitlines()
    assert len(samples) == prompts
    page = (eval_dir / "samples.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == prompts
    assert page.count('<div class="card">') == prompts
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["num_prompts"] == prompts and 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.slow  # 5 runs + 5 `python -m vlexp.evaluate`
@pytest.mark.parametrize("family", FAMILIES)
def test_evaluation_and_gallery_on_every_family(family, tmp_path, shapes_dir):
    """LoRA SFT evaluated at its step (in training) and afterwards (base model + adapter)."""
    run_dir = tmp_path / "run"
    overrides = [f"model={tiny_preset(family)}", "algo=sft", "memory=lora", "train.eval_steps=1"]
    overrides += ["eval.limit=4", "eval.max_new_tokens=16", *ONE_STEP]
    # The command, which also writes the config.resolved.yaml that vlexp.evaluate reads.
    result = run_cli(*overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert any("eval/accuracy" in row for row in read_metrics(run_dir))
    check_gallery(run_dir / "eval" / "step-1", 4)

    result = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", f"run={run_dir}", "eval.limit=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_gallery(run_dir / "eval", 3)
    assert json.loads((run_dir / "eval" / "metrics.json").read_text())["step"] == 1


@pytest.mark.slow  # 4 x 2 runs (the MoE GRPO resume is in test_family_runs.py)
@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "qwen3_vl_moe"])
def test_resume_on_every_family(family, tmp_path, shapes_dir):
    base = [
        f"model={tiny_preset(family)}",
        "algo=sft",
        "train.save_steps=1",
        "data.prepare.num_train=64",
    ]
    train_run([*base, "train.max_steps=2"], tmp_path)
    assert (tmp_path / "checkpoint-2").is_dir()
    rows = train_run([*base, "train.max_steps=3", "resume=auto"], tmp_path)
    steps = [row["step"] for row in rows]
    assert steps == [1, 2, 3], steps  # step 1 and 2 not trained again
    reload(tmp_path / "final", "sft", family)
