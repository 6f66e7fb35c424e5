"""DAPO's dynamic sampling (algo=dapo, vlexp.algorithms.dynamic_sampling): groups whose rewards
are all equal leave the batch, which is refilled from over-generated prompts; the kept fraction
is logged. Expectations are counted here from the scripted rewards, or taken from TRL's own
`frac_reward_zero_std` of the same generation, never from vlexp's helpers."""

from __future__ import annotations

import pytest

from tests.helpers import build_trainer, read_metrics, run_cli
from vlexp.validate import ConfigError, validate

GROUP = 4  # num_generations
# Two prompts per batch; oversample 3 generates 6 groups per call.
SMALL = [
    "algo=dapo",
    "data.prepare.num_train=32",
    "train.per_device_train_batch_size=8",
    "algo.args.steps_per_generation=1",
    "algo.args.mask_truncated_completions=false",  # every row's mask is the test's to read
    "algo.args.max_completion_length=16",
]


def test_rollout_groups_that_vary_counted_independently():
    """Weighted sums of two reward functions over 6 groups of 4; a group varies when its
    completions' weighted rewards are not all equal (counted with a Python set)."""
    import torch

    from vlexp.algorithms.dynamic_sampling import varying_groups

    rows = [
        [(1.0, 0.0)] * 4,  # constant
        [(1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 0.0)],  # sums equal (1 = 1) with weights 1,1
        [(1.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 1.0)],  # varies
        [(0.0, 0.0)] * 4,  # constant
        [(0.5, 0.0), (0.5, 0.0), (0.5, 0.0), (0.5, 0.25)],  # varies
        [(float("nan"), float("nan"))] * 3 + [(1.0, 1.0)],  # one scored completion: no spread
    ]
    weights = (1.0, 1.0)
    flat = torch.tensor([pair for group in rows for pair in group])
    expected = [
        len(
            {
                sum(w * r for w, r in zip(weights, pair, strict=True))
                for pair in group
                if pair[0] == pair[0]
            }
        )
        > 1
        for group in rows
    ]
    found = varying_groups(flat, torch.tensor(weights), GROUP, "sum_then_normalize").tolist()
    assert found == expected == [False, False, True, False, True, False]


# 2 x 2 ranks = one whole group globally, half a group on each rank.
ONE_STEP_TWO_RANKS = ["algo.args.steps_per_generation=1", "launcher.num_processes=2"]


def test_rollout_dynamic_sampling_is_checked_before_loading():
    from tests.helpers import compose

    validate(compose(["algo=dapo"]))
    with pytest.raises(ConfigError, match="oversample"):
        validate(compose(["algo=dapo", "algo.dynamic_sampling.oversample=0"]))
    with pytest.raises(ConfigError, match="whole groups on each process"):
        validate(compose(["algo=dapo", "train.per_device_train_batch_size=2", *ONE_STEP_TWO_RANKS]))


@pytest.fixture(scope="module")
def dapo(tmp_path_factory, tiny_model):
    """The algo=dapo trainer with one scripted reward: group g of each generation call scores
    alike unless PATTERN[g]; it records the completions it scored."""
    import torch

    trainer, _ = build_trainer(SMALL, tmp_path_factory.mktemp("dapo"))
    seen: dict = {"pattern": [], "completions": []}

    def scripted(completions, **kwargs):
        seen["completions"] = list(completions)
        return [
            float(i % 2) if seen["pattern"][i // GROUP] else 0.5 for i in range(len(completions))
        ]

    trainer.reward_funcs, trainer.reward_func_names = [scripted], ["scripted"]
    trainer.reward_processing_classes, trainer.reward_weights = [None], torch.ones(1)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer, seen


def _generate(dapo, pattern: list[bool]) -> dict:
    trainer, seen = dapo
    seen["pattern"] = pattern
    batch = [dict(trainer.train_dataset[i]) for i in (0, 1) for _ in range(GROUP)]
    return trainer._generate_and_score_completions(batch)


def _texts(trainer, batch, rows) -> list[str]:
    ids = batch["completion_ids"][rows]
    return trainer.processing_class.batch_decode(ids, skip_special_tokens=True)


def _logged(trainer, key: str) -> float:
    return trainer._metrics["train"][key][-1]


def test_rollout_batch_is_refilled_with_groups_that_vary(dapo):
    trainer, seen = dapo
    pattern = [False, True, False, True, True, False]  # the batch's own: groups 0, 1
    batch = _generate(dapo, pattern)
    assert len(seen["completions"]) == 6 * GROUP  # three times the batch's prompts, one call
    assert batch["completion_ids"].size(0) == 2 * GROUP
    kept = seen["completions"][1 * GROUP : 2 * GROUP] + seen["completions"][3 * GROUP : 4 * GROUP]
    texts = _texts(trainer, batch, list(range(2 * GROUP)))
    kept = [c[-1]["content"] if isinstance(c, list) else c for c in kept]  # conversational
    assert [t.strip() for t in texts] == [t.strip() for t in kept]
    assert _logged(trainer, "rollout/kept_fraction") == pytest.approx(sum(pattern) / len(pattern))
    # TRL's own count of zero-spread groups in the same generation is the complement.
    frac_zero = _logged(trainer, "frac_reward_zero_std")
    assert _logged(trainer, "rollout/kept_fraction") == pytest.approx(1 - frac_zero)
    assert _logged(trainer, "rollout/filled_fraction") == 1.0
    assert batch["completion_mask"].sum(1).min() > 0
    assert int(batch["num_items_in_batch"]) == int(batch["completion_mask"].sum())


def test_rollout_dropped_groups_do_not_reach_the_loss(dapo):
    """Too few groups vary: the batch holds the one that does, then a dropped group with its
    completion mask zeroed; changing the dropped group's tokens changes neither loss nor grad."""
    import torch

    trainer, _ = dapo
    pattern = [False, False, False, True, False, False]
    batch = _generate(dapo, pattern)
    assert _logged(trainer, "rollout/kept_fraction") == pytest.approx(1 / 6)
    assert _logged(trainer, "rollout/filled_fraction") == pytest.approx(0.5)
    assert batch["completion_mask"][GROUP:].sum() == 0 and batch["completion_mask"][:GROUP].all()
    assert int(batch["num_items_in_batch"]) == int(batch["completion_mask"][:GROUP].sum())

    def loss_and_grad(inputs):
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        grads = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
        return loss.item(), grads

    loss, grads = loss_and_grad(batch)
    other = dict(batch, completion_ids=batch["completion_ids"].clone())
    other["completion_ids"][GROUP:] = torch.randint_like(other["completion_ids"][GROUP:], 100, 200)
    other["advantages"] = batch["advantages"].clone()
    other["advantages"][GROUP:] = 5.0
    other_loss, other_grads = loss_and_grad(other)
    assert loss == pytest.approx(other_loss, abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, other_grads, strict=True))


def test_rollout_dapo_command_logs_the_kept_fraction(tmp_path, tiny_model):
    result = run_cli(
        "algo=dapo",
        "train.max_steps=3",
        "data.prepare.num_train=32",
        f"hydra.run.dir={tmp_path}",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    held = (tmp_path / "app.log").read_text()
    assert "'dynamic_sampling': 'on (3x prompts per generation)'" in held
    assert "'steps_per_generation': 16" in held
    generated = [row for row in read_metrics(tmp_path) if "frac_reward_zero_std" in row]
    assert generated, "no generation was logged"
    for row in generated:
        assert row["rollout/kept_fraction"] == pytest.approx(1 - row["frac_reward_zero_std"])
        assert 0.0 <= row["rollout/filled_fraction"] <= 1.0


def test_rollout_dynamic_sampling_mixin_goes_in_front_only_when_asked():
    from trl import GRPOTrainer

    from vlexp import patches
    from vlexp.algorithms.dynamic_sampling import DynamicSampling

    class Mine(GRPOTrainer):
        pass

    from vlexp.recipe.trainers import Parts, trainer_class

    plain = trainer_class(Mine, Parts())
    assert patches.DynamicSamplingMixin not in plain.__mro__
    sampling = DynamicSampling(oversample=3)
    cls = trainer_class(Mine, Parts(dynamic_sampling=sampling))
    assert cls.__mro__[1] is patches.DynamicSamplingMixin and cls.dynamic_sampling is sampling
    assert issubclass(cls, Mine)


def test_rollout_planner_counts_the_over_generated_rows():
    """The KV cache holds every row one generation call samples: oversample x the batch."""
    from vlexp import plan as planner

    def kv(*overrides: str) -> int:
        _, est = planner.plan_run(
            ["model=qwen2_5_vl_3b", "algo=dapo", *overrides], dict(planner.PLAN_DEFAULTS)
        )
        return est.parts["generation KV cache"]

    assert kv() == 3 * kv("algo.dynamic_sampling.enabled=false")
