"""GRPO-family variants train off-policy, as their papers do: each preset takes several optimizer
steps per generation (TRL's steps_per_generation), so from the second step on the importance
ratio differs from 1 and CISPO, SAPO, GSPO, VESPO and LUSPO compute their own gradients, not
GRPO's. The variants are every conf/algo file whose trainer is GRPOTrainer and whose loss
(loss_type, importance_sampling_level) differs from algo=grpo's, so a new file is covered.

The off-policy batch is the trainer's own: TRL's `_prepare_inputs` generates for the preset's
generation batch, one optimizer step changes the policy, and the next slice of that batch is fed
to TRL's `_compute_loss` of the variant and of GRPO (beta=0, so only the loss differs)."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import build_trainer, compose
from vlexp.paths import config_dir

SMALL = ["data.prepare.num_train=32", "train.max_steps=4", "train.per_device_train_batch_size=4"]


def _args(path) -> dict:
    raw = yaml.safe_load(path.read_text())
    if raw.get("trainer", {}).get("_target_") != "trl.GRPOTrainer":
        return {}
    return raw["args"]


def _loss(args: dict) -> tuple:
    return args.get("loss_type"), args.get("importance_sampling_level", "token")


def variants() -> list[str]:
    """Every GRPOTrainer algo file whose loss is not GRPO's."""
    grpo = _loss(_args(config_dir() / "algo" / "grpo.yaml"))
    files = sorted((config_dir() / "algo").glob("*.yaml"))
    return [f.stem for f in files if _args(f) and _loss(_args(f)) != grpo]


def test_the_variants_are_found():
    assert {"cispo", "sapo", "gspo", "vespo", "luspo", "dapo"} <= set(variants())


@pytest.mark.parametrize("name", variants())
def test_variant_preset_takes_several_optimizer_steps_per_generation(name, tmp_path):
    """The GRPOConfig the command builds: more micro-batches per generation than one optimizer
    step holds, which is TRL's own condition for keeping the generating policy's log-probs."""
    from vlexp.recipe.run import build_args

    args = build_args(compose([f"algo={name}"]), tmp_path)
    per_generation = args.steps_per_generation * args.num_iterations
    assert per_generation > args.gradient_accumulation_steps, (name, per_generation)
    assert args.gradient_accumulation_steps % per_generation != 0  # TRL: old log-probs kept


def _grad(model) -> list:
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def _loss_and_grad(trainer, model, inputs):
    model.zero_grad()
    loss = trainer._compute_loss(model, inputs)
    loss.backward()
    return loss.detach().item(), _grad(model)


def _with_advantages(inputs: dict) -> dict:
    """Fixed advantages of both signs: a group of the tiny policy may well score all alike."""
    import torch

    rows = len(inputs["advantages"])
    signs = torch.tensor([1.0, -0.5, 0.75, -1.0], device=inputs["advantages"].device)
    return {**inputs, "advantages": signs.repeat(rows // 4 + 1)[:rows]}


@pytest.fixture(scope="module")
def off_policy(tmp_path_factory, tiny_model):
    """(GRPO trainer with beta=0, the second micro-batch of its first generation after one
    optimizer step on the first): the batch's `old_per_token_logps` are the generating
    policy's, no longer the model's, as in every step after the first of a generation."""
    import torch

    overrides = [*SMALL, "algo=grpo", "algo.args.beta=0.0", "+algo.args.steps_per_generation=2"]
    trainer, _ = build_trainer(overrides, tmp_path_factory.mktemp("grpo"))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = next(iter(trainer.get_train_dataloader()))
    first = _with_advantages(trainer._prepare_inputs(batch))
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1.0)
    trainer.compute_loss(trainer.model, first).backward()
    optimizer.step()
    trainer._step = 1
    inputs = _with_advantages(trainer._prepare_inputs(batch))
    with torch.no_grad():  # the ratio really is off 1 for this batch
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
            torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
            inputs["completion_ids"].size(1),
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            num_images=inputs.get("num_images"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
        )
    mask = inputs["completion_mask"].bool()
    assert (logps - inputs["old_per_token_logps"])[mask].abs().max() > 1e-3
    return trainer, inputs


def _trl_trainer(name: str, grpo, tmp_path):
    """TRL's GRPOTrainer with the GRPOConfig `algo=NAME` builds (beta=0: the losses alone are
    compared), on the GRPO trainer's model, data and rewards."""
    from trl import GRPOTrainer

    from vlexp.recipe.run import build_args

    args = build_args(compose([*SMALL, f"algo={name}", "algo.args.beta=0.0"]), tmp_path)
    trainer = GRPOTrainer(
        model=grpo.model,
        args=args,
        reward_funcs=grpo.reward_funcs,
        train_dataset=grpo.train_dataset,
        processing_class=grpo.processing_class,
    )
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.mark.parametrize("name", variants())
def test_variant_loss_and_gradient_differ_from_grpo_off_policy(name, off_policy, tmp_path):
    """The preset keeps the generating policy's log-probs (TRL's condition), so its steps after
    the first of a generation are off-policy; on such a batch its loss and gradient are its
    own, not GRPO's."""
    import torch

    grpo, inputs = off_policy
    trainer = _trl_trainer(name, grpo, tmp_path)
    per_generation = trainer.args.steps_per_generation * trainer.num_iterations
    assert trainer.args.gradient_accumulation_steps % per_generation != 0, "always on-policy"
    loss, grad = _loss_and_grad(trainer, grpo.model, inputs)
    grpo_loss, grpo_grad = _loss_and_grad(grpo, grpo.model, inputs)
    assert abs(loss - grpo_loss) > 1e-6, (name, loss, grpo_loss)
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(grad, grpo_grad, strict=True))


def test_cispo_and_vespo_differ_off_policy(off_policy, tmp_path):
    """On-policy both weigh every token's -advantage x log p by 1 (the same gradient); off
    policy CISPO caps the token ratio, VESPO weighs by a Gamma function of the sequence ratio."""
    import torch

    grpo, inputs = off_policy
    cispo = _trl_trainer("cispo", grpo, tmp_path / "cispo")
    vespo = _trl_trainer("vespo", grpo, tmp_path / "vespo")
    for trainer in (cispo, vespo):  # each preset trains on such batches
        per_generation = trainer.args.steps_per_generation * trainer.num_iterations
        assert trainer.args.gradient_accumulation_steps % per_generation != 0, "always on-policy"
    loss, grad = _loss_and_grad(cispo, grpo.model, inputs)
    other, other_grad = _loss_and_grad(vespo, grpo.model, inputs)
    assert abs(loss - other) > 1e-6, (loss, other)
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(grad, other_grad, strict=True))
