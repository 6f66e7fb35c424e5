"""New algorithm families learn on `shapes` with the tiny model: the RL files raise the reward
of the warmed tiny model (the setting of the GRPO learning test: 150 steps of 2 prompts x 4
completions, reward=[think_format,accuracy], seed 42), KTO, ORPO, SimPO and CPO widen the
chosen-vs-rejected margin, and distillation brings a fresh student's divergence to a trained
teacher down. The numbers in the comments were measured on a 2-core CPU.

The GRPO-family files take several optimizer steps per generation (steps_per_generation), so
rewards are logged once per generation and the learning tests compare the first and last
quarter of the generations (9 of 37). Why CISPO, SAPO and VESPO run at a lower learning rate:
without a KL anchor the tiny model collapses at the default 1e-3 (long, truncated completions,
reward near 0): GRPO with beta=0 and SAPO did so at one step per generation (0.131 -> 0.081),
VESPO does so off-policy (0.108 -> 0.010), CISPO on 4 of 6 seeds. Their knobs are the papers'
and TRL's.

One seed's trajectory is not a property of an algorithm: seed 42 alone passed where it was
first measured and failed on later machines, CI included (VESPO +0.28 against the +0.30 it
needed, online DPO +0.17 against +0.20), and CISPO at 1e-3 learned on seeds 42 and 0 but
collapsed on seeds 1, 2, 3 and 4. So the GRPO-family, online DPO and reference-free preference
tests train three seeds and assert the mean rise over them. Each required rise is about half
the mean rise measured over six seeds (42, 0-4; torch 2.14.1, 2-core CPU); a run that cannot
learn (VESPO at lr 0) rises 0.015 on the same windows (-0.06, 0.03, 0.08 by seed).
"""

from __future__ import annotations

import pytest

from tests.e2e.inprocess import train_in_process
from tests.e2e.test_more_algorithms import run
from tests.helpers import read_metrics, run_cli

SEEDS = (42, 1, 2)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.slow
def test_kto_widens_the_margin_between_desirable_and_undesirable(tmp_path, tiny_model):
    _, rows, _ = run(tmp_path, "algo=kto", "train.max_steps=60", timeout=3600)
    margins = [row["rewards/margins"] for row in rows]
    first, last = mean(margins[:10]), mean(margins[-10:])
    print(f"kto rewards/margins: first 10 steps {first:.3f}, last 10 {last:.3f}")
    assert last > first + 0.2 and last > 0, (first, last)


@pytest.mark.slow
def test_distillation_brings_a_fresh_student_to_a_trained_teacher(tmp_path, tiny_model):
    from tests.helpers import run_cli

    teacher = tmp_path / "teacher"
    result = run_cli(
        "algo=sft",
        "train.max_steps=40",
        "train.save_steps=1000",
        f"hydra.run.dir={teacher}",
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    held, rows, _ = run(
        tmp_path,
        "algo=distill",
        f"teacher.name_or_path={teacher}",
        "train.max_steps=30",
        timeout=3600,
    )
    assert held["teacher"] == str(teacher / "final")
    divergence = [row["loss"] for row in rows]  # reverse KL(student || teacher) per token
    first, last = mean(divergence[:5]), mean(divergence[-5:])
    print(f"distill reverse KL to the teacher: first 5 steps {first:.4f}, last 5 {last:.4f}")
    assert first > 0.01 and last < 0.5 * first, (first, last)


# algo file: (extra overrides, required mean rise over SEEDS, measured first -> last quarter mean
# reward over SEEDS; the rise by seed over six seeds). Each file's steps_per_generation is 4:
# 9 of 37 generations per quarter.
GRPO_FAMILY = {
    "cispo": (["train.learning_rate=5e-4"], 0.2, "0.351 -> 0.760; six seeds +0.36..+0.45"),
    "vespo": (["train.learning_rate=5e-4"], 0.15, "0.418 -> 0.744; six seeds +0.25..+0.40"),
    "bnpo": ([], 0.25, "0.451 -> 0.964; six seeds +0.43..+0.58"),
    "luspo": ([], 0.2, "0.447 -> 0.957; six seeds +0.37..+0.59"),
    # Without the anchor seed 4 lost the think format in two generations and never found it
    # again (reward 0.14 -> 0.14, at 3e-4 too); with beta 0.04 all six seeds learn.
    "sapo": (
        ["train.learning_rate=5e-4", "algo.args.beta=0.04"],
        0.15,
        "0.426 -> 0.735; six seeds +0.29..+0.43",
    ),
}


def first_and_last_quarter(rows: list[dict]) -> tuple[float, float]:
    # Rewards are logged by the steps that generate: every steps_per_generation-th one.
    rewards = [row["reward"] for row in rows if "reward" in row]
    k = len(rewards) // 4
    return mean(rewards[:k]), mean(rewards[-k:])


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(GRPO_FAMILY))
def test_grpo_family_file_raises_the_reward_of_the_warmed_tiny_model(algo, tmp_path, tiny_model):
    extra, rise, measured = GRPO_FAMILY[algo]
    windows = []
    for seed in SEEDS:
        overrides = [f"algo={algo}", f"seed={seed}", "train.save_steps=1000", *extra]
        trainer, rows = train_in_process(overrides, tmp_path / f"seed{seed}")
        assert len(rows) == 150 and trainer.loss_type == algo
        windows.append(first_and_last_quarter(rows))
    first, last = mean([w[0] for w in windows]), mean([w[1] for w in windows])
    print(f"{algo} mean reward, first -> last quarter, by seed {SEEDS}: {windows} ({measured})")
    assert last > first + rise, (first, last, windows)


# algo file: (extra overrides, measured first-20 -> last-20 mean reward); CLI runs, seed 42.
RLOO_FAMILY = {
    "rloo": ([], "0.219 -> 0.963"),
    "reinforce_pp": ([], "0.294 -> 0.981"),
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(RLOO_FAMILY))
def test_rloo_file_raises_the_reward_of_the_warmed_tiny_model(algo, tmp_path, tiny_model):
    extra, measured = RLOO_FAMILY[algo]
    held, rows, _ = run(tmp_path, f"algo={algo}", "train.max_steps=150", *extra, timeout=3600)
    rewards = [row["reward"] for row in rows]
    first, last = mean(rewards[:20]), mean(rewards[-20:])
    print(f"{algo} mean reward: first 20 steps {first:.3f}, last 20 {last:.3f} ({measured})")
    assert held["trainer"] == "RLOOTrainer" and len(rows) == 150
    assert last > first + 0.4, (first, last)


# algo file: measured first-20 -> last-20 mean of TRL's rewards/margins over SEEDS (150 steps,
# lr 1e-3), then the last/first ratio by seed over five seeds (42, 0-3); the margin is beta x the
# chosen-minus-rejected log-prob (mean per token for ORPO and SimPO, summed for CPO). Seed 0
# alone would fail a 1.6x bar on all three (x1.58, x1.38, x1.40), so the bar is on the mean
# over SEEDS and about half the five-seed mean gain (x2.06, x2.28, x1.94): x1.4.
PREFERENCE = {
    "orpo": "0.0181 -> 0.0422; x1.58..x2.49 (log_odds_chosen +0.39..+0.69, all seeds)",
    "simpo": "0.565 -> 1.525; x1.38..x3.06",
    "cpo": "0.504 -> 1.120; x1.40..x2.35",
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(PREFERENCE))
def test_reference_free_preference_file_widens_the_margin_on_image_pairs(
    algo, tmp_path, tiny_model
):
    margins, odds = [], []
    for seed in SEEDS:
        overrides = (f"algo={algo}", f"seed={seed}", "train.max_steps=150")
        held, rows, _ = run(tmp_path / f"seed{seed}", *overrides, timeout=3600)
        assert held["images"] is True and held["reference"] == "none"
        assert len(rows) == 150
        values = [row["rewards/margins"] for row in rows]
        margins.append((mean(values[:20]), mean(values[-20:])))
        if algo == "orpo":  # the log odds of chosen over rejected, ORPO's own margin
            values = [row["log_odds_chosen"] for row in rows]
            odds.append((mean(values[:20]), mean(values[-20:])))
    first, last = mean([m[0] for m in margins]), mean([m[1] for m in margins])
    print(f"{algo} rewards/margins, first 20 -> last 20 steps, by seed {SEEDS}: {margins}")
    print(f"  measured: {PREFERENCE[algo]}")
    assert first > 0 and last > 1.4 * first, (first, last, margins)
    if odds:
        assert mean([o[1] for o in odds]) > mean([o[0] for o in odds]) + 0.3, odds


@pytest.mark.slow
def test_online_dpo_raises_the_judge_scores_of_the_warmed_tiny_model(tmp_path, tiny_model):
    """8 prompts x 2 samples per step, judged by think_format + accuracy (0..2). lr 5e-4:
    1e-3 collapses (KL ~14, scores -> 0), 3e-4 rises too slowly for a clear test. Measured
    (150 steps, mean score of the first 20 steps -> the last 20): 0.335 -> 0.589 over SEEDS;
    by seed over six seeds +0.07..+0.32, mean +0.23."""
    windows = []
    for seed in SEEDS:
        run_dir = tmp_path / f"seed{seed}"
        result = run_cli(
            "algo=online_dpo", "train.max_steps=150", "train.learning_rate=5e-4", f"seed={seed}",
            "train.save_steps=1000", f"hydra.run.dir={run_dir}", timeout=3600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        rows = read_metrics(run_dir)
        scores = [row["objective/scores"] for row in rows if "objective/scores" in row]
        assert len(scores) == 150, len(scores)
        windows.append((mean(scores[:20]), mean(scores[-20:])))
    first, last = mean([w[0] for w in windows]), mean([w[1] for w in windows])
    print(f"online_dpo mean judge score, first 20 -> last 20 steps, by seed {SEEDS}: {windows}")
    assert last > first + 0.1, (first, last, windows)
