"""Short runs of each GRPO-family algorithm file on the tiny model, checked against what the
trainer actually held and logged; LoRA's reference model; reward/record alignment."""

from __future__ import annotations

import json
import math
import re

import pytest

from tests.e2e.inprocess import train_in_process

SMALL = ["train.max_steps=2", "train.per_device_train_batch_size=8", "train.save_steps=1000"]
EVERY_RUN = ("loss", "entropy")
# Logged by the steps that generate: every step for grpo, the first of each generation for the
# files that take several optimizer steps per generation (steps_per_generation).
GENERATING = (
    "reward",
    "reward_std",
    "rewards/think_format/mean",
    "rewards/accuracy/mean",
    "completions/mean_length",
)
CLIP = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")
# What TRL 1.16 logs about its ratio handling, per loss: the hard-clip losses their clip ratios,
# CISPO the share of capped weights, VESPO its mean Gamma weight, SAPO (soft gate) nothing.
RATIO_METRICS = {
    "grpo": CLIP,
    "dapo": CLIP,
    "dr_grpo": CLIP,
    "bnpo": CLIP,
    "luspo": CLIP,
    "cispo": ("cispo_clip_ratio",),
    "vespo": ("vespo/phi_seq_mean",),
    "sapo": (),
}

CASES = {
    # algo file: (extra overrides, what the trainer must hold)
    "grpo": ([], dict(loss_type="grpo", importance_sampling_level="token", beta=0.04)),
    "dapo": (
        ["reward=[think_format,accuracy,length]"],
        dict(loss_type="dapo", importance_sampling_level="token", beta=0.0, epsilon_high=0.28),
    ),
    "dr_grpo": (
        [],
        dict(loss_type="dr_grpo", importance_sampling_level="token", scale_rewards="none"),
    ),
    "gspo": (
        ["algo.args.top_entropy_quantile=0.2"],
        dict(loss_type="grpo", importance_sampling_level="sequence", top_entropy_quantile=0.2),
    ),
    "cispo": ([], dict(loss_type="cispo", beta=0.0, epsilon_high=5.0)),
    "sapo": ([], dict(loss_type="sapo", beta=0.0)),
    "bnpo": ([], dict(loss_type="bnpo", beta=0.04, importance_sampling_level="token")),
    "luspo": ([], dict(loss_type="luspo", beta=0.0, importance_sampling_level="sequence")),
    "vespo": ([], dict(loss_type="vespo", beta=0.0, importance_sampling_level="token")),
}
# Knobs TRL reads from the trainer's args rather than holding as attributes.
ARGS_HELD = {
    "sapo": dict(sapo_temperature_pos=1.0, sapo_temperature_neg=1.05),
    "vespo": dict(vespo_k_pos=2.0, vespo_lambda_pos=3.0, vespo_k_neg=3.0, vespo_lambda_neg=2.0),
}


def _finite(row: dict, name: str) -> bool:
    return isinstance(row.get(name), int | float) and math.isfinite(row[name])


@pytest.mark.parametrize("algo", list(CASES))
def test_each_algorithm_file_runs_with_its_loss(algo, tmp_path, tiny_model):
    extra, expected = CASES[algo]
    trainer, rows = train_in_process([f"algo={algo}", *SMALL, *extra], tmp_path / "run")

    held = {key: getattr(trainer, key) for key in expected if key != "epsilon_high"}
    if "epsilon_high" in expected:
        held["epsilon_high"] = trainer.epsilon_high
    assert held == expected
    assert trainer.num_generations == 4
    for key, value in ARGS_HELD.get(algo, {}).items():
        assert getattr(trainer.args, key) == value, key

    # beta=0 loads no reference model; beta>0 without LoRA keeps a separate frozen copy.
    if trainer.beta == 0.0:
        assert trainer.ref_model is None
    else:
        assert trainer.ref_model is not None and trainer.ref_model is not trainer.model

    assert [row["step"] for row in rows] == [1, 2]
    steps_per_generation = (
        trainer.args.steps_per_generation // trainer.args.gradient_accumulation_steps
    )
    for step, row in enumerate(rows):
        generated = GENERATING if step % steps_per_generation == 0 else ()
        for name in (*EVERY_RUN, *generated, *RATIO_METRICS[trainer.loss_type]):
            assert _finite(row, name), (algo, name, row)
        others = {m for ms in RATIO_METRICS.values() for m in ms} - set(
            RATIO_METRICS[trainer.loss_type]
        )
        assert not others & set(row), (algo, others & set(row))
        # TRL logs the KL only when there is a KL term.
        assert ("kl" in row) == (trainer.beta != 0.0), row
    if algo == "dapo":
        assert -1.0 <= rows[0]["rewards/length/mean"] <= 0.0
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_lora_reference_is_the_adapter_disabled_base(tmp_path, tiny_model, monkeypatch):
    import trl.trainer.grpo_trainer as grpo_module
    from accelerate.utils import is_peft_model

    def no_second_model(*args, **kwargs):
        raise AssertionError("GRPOTrainer loaded a second model for the reference")

    monkeypatch.setattr(grpo_module, "create_model_from_path", no_second_model)
    trainer, rows = train_in_process(
        [
            "algo=grpo",
            "memory=lora",
            "algo.args.beta=0.04",
            "train.max_steps=3",
            "train.learning_rate=0.01",
            "train.per_device_train_batch_size=8",
            "memory.peft.lora_dropout=0.0",
        ],
        tmp_path / "run",
    )
    assert is_peft_model(trainer.model) and trainer.ref_model is None
    from vlexp.algorithms.grpo import reference_model

    assert reference_model(trainer) == "the policy with its LoRA adapter disabled (no second copy)"
    # LoRA's B matrices start at 0, so the policy equals the base at step 1; once the adapter
    # has trained, the KL to the adapter-disabled base becomes positive.
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert rows[-1]["kl"] > 0.0
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()


SEEN: list[dict] = []


def alignment_probe(prompts, completions, solution, item, **kwargs):
    """Records what TRL passed; scores 1.0 when the solution belongs to the prompt's item."""
    SEEN.append(
        {"prompts": prompts, "completions": completions, "solution": solution, "item": item}
    )
    asked = [int(re.search(r"Item (\d+):", json.dumps(p, default=str)).group(1)) for p in prompts]
    return [float(a == int(s) == int(i)) for a, s, i in zip(asked, solution, item, strict=True)]


def test_reward_kwargs_align_with_completions(tmp_path, tiny_model, shapes_dir):
    # Every record carries its own id in the prompt and in two columns: with several prompts per
    # batch and several generations per prompt, each completion must see its own record's values.
    records = [
        json.loads(line) for line in (shapes_dir / "train.jsonl").read_text().splitlines()[:24]
    ]
    lines = [
        json.dumps(
            {
                "image": r["image"],  # relative to data.image_root
                "prefix": f"Item {i}: {r['prefix']}",
                "solution": str(i),
                "item": i,
            }
        )
        for i, r in enumerate(records)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    SEEN.clear()
    _, rows = train_in_process(
        [
            "data=jsonl",
            f"data.train={tmp_path / 'train.jsonl'}",
            f"data.image_root={shapes_dir}",
            "reward=[think_format,accuracy]",
            "+reward.funcs.probe._target_=tests.e2e.test_grpo_family_runs.alignment_probe",
            "+reward.funcs.probe._partial_=true",
            "+reward.weights.probe=0.0",
            "train.max_steps=3",
            "train.per_device_train_batch_size=4",
            "train.gradient_accumulation_steps=3",  # 12 completions = 3 prompts x 4 generations
        ],
        tmp_path / "run",
    )
    assert len(SEEN) == 3  # one generation batch per optimizer step
    for call in SEEN:
        assert len(call["completions"]) == len(call["solution"]) == 12
        asked = [
            int(re.search(r"Item (\d+):", json.dumps(p, default=str)).group(1))
            for p in call["prompts"]
        ]
        assert [int(s) for s in call["solution"]] == asked == list(call["item"])
        assert sorted(asked.count(a) for a in set(asked)) == [4, 4, 4]
    assert all(row["rewards/alignment_probe/mean"] == 1.0 for row in rows)
