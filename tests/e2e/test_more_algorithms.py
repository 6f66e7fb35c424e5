"""The algorithm files over TRL trainers other than GRPOTrainer (RLOO, REINFORCE++, KTO,
distillation), each run through `python -m vlexp` on the tiny model: what the trainer held
(the run's logged account of it) and the metric names TRL wrote to metrics.jsonl."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from tests.helpers import read_metrics, run_cli

SMALL = ["train.max_steps=2", "train.per_device_train_batch_size=8", "train.save_steps=1000"]
HELD_LINE = "algorithm (as the trainer holds it): "


def run(tmp_path: Path, *overrides: str, timeout: int = 600) -> tuple[dict, list[dict], Path]:
    """Train through the CLI; return what the trainer held, the metric rows and the run dir."""
    run_dir = tmp_path / "run"
    result = run_cli(*SMALL, *overrides, f"hydra.run.dir={run_dir}", timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (run_dir / "app.log").read_text()
    (line,) = [line for line in log.splitlines() if HELD_LINE in line]
    held = ast.literal_eval(line.split(HELD_LINE, 1)[1])
    return held, read_metrics(run_dir), run_dir


def finite(rows: list[dict], *names: str) -> None:
    for row in rows:
        for name in names:
            value = row.get(name)
            assert isinstance(value, int | float) and math.isfinite(value), (name, row)


RL_METRICS = (
    "loss",
    "reward",
    "reward_std",
    "rewards/think_format/mean",
    "rewards/accuracy/mean",
    "frac_reward_zero_std",
    "entropy",
    "clip_ratio/region_mean",
    "completions/mean_length",
)


@pytest.mark.parametrize(
    ("algo", "normalized", "beta"), [("rloo", False, 0.05), ("reinforce_pp", True, 0.01)]
)
def test_rloo_files_run_on_rloo_trainer(algo, normalized, beta, tmp_path, tiny_model):
    held, rows, run_dir = run(tmp_path, f"algo={algo}")
    assert held["trainer"] == "RLOOTrainer"
    assert held["normalize_advantages"] is normalized
    assert held["beta (KL in the reward)"] == beta
    assert held["epsilon"] == [0.2, 0.2] and held["num_generations"] == 4
    assert held["reference"].startswith("a separate copy of")  # beta > 0, no LoRA
    assert held["rewards"] == {"think_format": 1.0, "accuracy": 1.0}
    assert [row["step"] for row in rows] == [1, 2]
    finite(rows, *RL_METRICS, "kl")  # RLOO logs the KL penalty it puts in the reward
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_distill_with_the_student_as_teacher_has_zero_divergence(tmp_path, tiny_model):
    # The teacher is the student's own starting checkpoint: if the teacher saw the same
    # prompts and images as the student, both distributions agree and the divergence is 0.
    held, rows, run_dir = run(tmp_path, "algo=distill", f"teacher.name_or_path={tiny_model}")
    assert held["trainer"] == "DistillationTrainer"
    assert (held["divergence"], held["beta"], held["temperature"]) == ("reverse KL", 1.0, 1.0)
    assert held["teacher"] == str(tiny_model) and held["teacher_dtype"] == "torch.float32"
    assert [row["step"] for row in rows] == [1, 2]
    finite(rows, "loss", "entropy", "completions/mean_length")
    assert all(row["loss"] == pytest.approx(0.0, abs=1e-6) for row in rows)
    assert not any(name.startswith("rewards/") for row in rows for name in row)  # no rewards
    assert (run_dir / "final" / "model.safetensors").is_file()


KTO_METRICS = (
    "loss",
    "kl",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)


def test_kto_runs_on_shapes_pairs_split_into_labelled_rows(tmp_path, tiny_model):
    held, rows, run_dir = run(tmp_path, "algo=kto")
    assert held == {
        "trainer": "KTOTrainer",
        "loss_type": "kto",
        "beta": 0.1,
        "desirable_weight": 1.0,
        "undesirable_weight": 1.0,
        "kl_estimate": True,
        "train_sampling_strategy": "sequential",
        "reference": "a separate frozen copy of the starting policy",
    }
    assert [row["step"] for row in rows] == [1, 2]
    finite(rows, *KTO_METRICS)  # chosen/rejected: desirable/undesirable rows of each batch
    assert rows[0]["rewards/margins"] == 0.0  # policy == reference at the first step
    assert (run_dir / "final" / "model.safetensors").is_file()
    # The summary shows what KTO logs beside its loss: the margin and the KL estimate.
    shown = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert {"rewards/margins", "kl", "loss"} <= set(shown), shown
    assert shown["kl"]["last"] == rows[-1]["kl"]  # 2 logged steps: a window of 1


# What TRL's pairwise trainers (online DPO, ORPO, CPO/SimPO) log of a chosen/rejected pair.
PAIR_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
)
ONLINE_DPO_METRICS = (
    "loss",
    "objective/kl",
    "objective/scores",
    "objective/scores_margin",
    *PAIR_METRICS,
)


def test_online_dpo_judges_two_samples_per_image_prompt_with_the_rewards(tmp_path, tiny_model):
    held, rows, run_dir = run(
        tmp_path, "algo=online_dpo", "train.per_device_train_batch_size=4"
    )  # 4 prompts x 2 samples, the same completions per step as the GRPO files' 8
    assert held == {
        "trainer": "OnlineDPOTrainer",
        "loss_type": "sigmoid",
        "beta": 0.1,
        "completions_per_prompt": 2,
        "max_new_tokens": 32,
        "judge": {"think_format": 1.0, "accuracy": 1.0},
        "reference": "a separate frozen copy of the starting policy",
    }
    assert [row["step"] for row in rows] == [1, 2]
    finite(rows, *ONLINE_DPO_METRICS)
    assert rows[0]["objective/kl"] == 0.0  # policy == reference before the first update
    # The judge's scores are the configured rewards' weighted sum: both are 0/1 here.
    assert all(0.0 <= row["objective/scores"] <= 2.0 for row in rows)
    assert (run_dir / "final" / "model.safetensors").is_file()


PREFERENCE_METRICS = ("loss", "nll_loss", *PAIR_METRICS)
NO_REFERENCE = {"images": True, "reference": "none"}
PREFERENCE_CASES = {
    "orpo": {
        "trainer": "ORPOTrainer",
        "loss": "nll + beta x log odds ratio",
        "beta": 0.1,
        "nll_tokens": "prompt and chosen answer",
        **NO_REFERENCE,
    },
    "simpo": {
        "trainer": "CPOTrainer",
        "loss_type": "simpo",
        "beta": 2.0,
        "cpo_alpha": 0.0,
        "simpo_gamma": 0.5,
        "label_smoothing": 0.0,
        "alpha": 0.0,
        **NO_REFERENCE,
    },
    "cpo": {
        "trainer": "CPOTrainer",
        "loss_type": "sigmoid",
        "beta": 0.1,
        "cpo_alpha": 1.0,
        "label_smoothing": 0.0,
        "alpha": 0.0,
        **NO_REFERENCE,
    },
}


@pytest.mark.parametrize("algo", list(PREFERENCE_CASES))
def test_reference_free_preference_files_run_on_image_pairs(algo, tmp_path, tiny_model):
    held, rows, run_dir = run(tmp_path, f"algo={algo}", "train.per_device_train_batch_size=4")
    assert held == PREFERENCE_CASES[algo]
    assert [row["step"] for row in rows] == [1, 2]
    finite(rows, *PREFERENCE_METRICS)
    if algo == "orpo":
        finite(rows, "log_odds_ratio", "log_odds_chosen")
    else:  # SimPO has no NLL term; CPO's is over the chosen answer's tokens only
        assert all((row["nll_loss"] == 0.0) == (algo == "simpo") for row in rows)
    assert (run_dir / "final" / "model.safetensors").is_file()


def test_orpo_expands_image_tokens_and_its_loss_sees_the_pixels(tmp_path, tiny_model):
    import torch

    from tests.helpers import build_trainer
    from vlexp.algorithms.preference import IMAGES_KEY

    trainer, _ = build_trainer(
        ["algo=orpo", "train.per_device_train_batch_size=4"], tmp_path / "run"
    )
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    images = batch[IMAGES_KEY]
    merge = trainer.vision_processing.processor.image_processor.merge_size
    per_image = (images["image_grid_thw"].prod(-1) // merge**2).tolist()  # one image per record
    image_token = trainer.model.config.image_token_id
    for key in ("prompt_input_ids", "chosen_input_ids", "rejected_input_ids"):
        assert (batch[key] == image_token).sum(-1).tolist() == per_image, key

    trainer.model.eval()
    with torch.no_grad():
        seen = trainer.concatenated_forward(trainer.model, batch)[0]
        blank = {**batch, IMAGES_KEY: {**images, "pixel_values": images["pixel_values"] * 0}}
        without = trainer.concatenated_forward(trainer.model, blank)[0]
    assert seen.shape == (4,)
    assert not torch.allclose(seen, without)  # the chosen answers' log-probs depend on the image
