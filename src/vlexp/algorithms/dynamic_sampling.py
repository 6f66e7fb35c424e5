"""DAPO's dynamic sampling (Yu et al. 2025, Sec. 3.2) for TRL's GRPOTrainer.

A group whose completions all score the same has advantage 0: it adds no policy gradient but
still counts in the batch (DAPO's token normaliser, the KL and entropy terms). DAPO drops such
groups and fills the batch with groups that do differ. verl (`algorithm.filter_groups`: generate
`gen_batch_size` prompts, keep groups whose metric varies, generate again until
`train_batch_size` prompts are kept, at most `max_num_gen_batches` times) and EasyR1
(`algorithm.online_filtering`, `trainer.max_try_make_batch`) loop over generation calls.

vlexp over-generates within TRL's one generation call instead: each process draws
`oversample - 1` times its batch's prompts more from the training set, TRL generates and
scores them all, and the batch keeps the first groups whose rewards vary (the batch's own
groups first). Where fewer than the batch needs vary, the rest of the batch is filled with
dropped groups whose completion mask is zeroed (as TRL masks truncated completions), so they
add nothing to any loss term or normaliser. Logged per generation:
`rollout/kept_fraction` (groups whose rewards vary / groups generated) and
`rollout/filled_fraction` (batch slots holding such a group; 1.0 when the refill succeeded).

The TRL touch points are `vlexp.patches.DynamicSamplingMixin`; this module holds the logic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DynamicSampling:
    """`algo.dynamic_sampling`: generate `oversample` times the batch's prompts per call."""

    oversample: int

    @classmethod
    def from_config(cls, node: Any) -> DynamicSampling | None:
        """None when the node is absent or `enabled: false`."""
        if not node or not node.get("enabled", False):
            return None
        return cls(oversample=int(node.get("oversample", 3)))

    def more(self, trainer: Any, inputs: list[dict]) -> list[dict]:
        """The rows to generate besides the batch's own: (oversample - 1) x its prompts, drawn
        with each process's own generator (the data order of the batches is left alone)."""
        if not hasattr(trainer, "_vlexp_prompt_rng"):
            rank = trainer.accelerator.process_index
            trainer._vlexp_prompt_rng = random.Random(f"{trainer.args.seed}/{rank}")
        size = trainer.num_generations
        count = (self.oversample - 1) * len(inputs) // size
        return extra_prompts(trainer.train_dataset, count, size, trainer._vlexp_prompt_rng)

    def keep(self, trainer: Any, output: dict[str, Any], batch_rows: int) -> dict[str, Any]:
        """TRL's output cut back to `batch_rows` rows (see `keep_varying_groups`)."""
        return keep_varying_groups(trainer, output, batch_rows)


def problems(node: Any, groups: bool) -> list[str]:
    """What is wrong with an `algo.dynamic_sampling` node, said before anything loads."""
    if not node or not node.get("enabled", False):
        return []
    found = []
    if not groups:
        found.append(
            "algo.dynamic_sampling.enabled=true needs an algorithm with groups of completions "
            "(algo.groups=true, the GRPO family): drop the key"
        )
    oversample = node.get("oversample", 3)
    if not isinstance(oversample, int) or isinstance(oversample, bool) or oversample < 1:
        found.append(
            f"algo.dynamic_sampling.oversample={oversample}: a whole number >= 1 (how many "
            "times the batch's prompts one generation call samples; verl's DAPO recipe: 3)"
        )
    return found


def varying_groups(
    rewards_per_func: torch.Tensor, weights: torch.Tensor, group_size: int, aggregation: str
) -> torch.Tensor:
    """(groups,) bool: True where the group's completions do not all score the same.

    `rewards_per_func`: (completions, reward functions) as TRL's `_calculate_rewards` returns
    it (every process's rows, NaN where a function did not score). With TRL's default
    `sum_then_normalize` the advantage is built on the weighted sum, so that sum must vary;
    with `normalize_then_sum` on each function's own scores, so one of them must. TRL's
    test is the same (`frac_reward_zero_std`: `isclose(std, 0)`); a group with fewer than two
    scored completions has no std and does not vary."""
    import torch
    from trl.trainer.utils import nanstd

    if aggregation == "sum_then_normalize":
        summed = (rewards_per_func * weights.to(rewards_per_func.device)).nansum(dim=1)
        summed[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        scores = summed.view(-1, group_size, 1)
    else:
        scores = rewards_per_func.view(-1, group_size, rewards_per_func.size(1))
    std = torch.nan_to_num(nanstd(scores, dim=1), nan=0.0)  # (groups, columns)
    return ~torch.isclose(std, torch.zeros_like(std)).all(dim=1)


def fill_batch(varies: list[bool], needed: int) -> tuple[list[int], int]:
    """(group indices for a batch of `needed` groups, how many of them vary): the varying
    groups in order, then dropped groups as masked fillers where too few vary."""
    keep = [g for g, v in enumerate(varies) if v][:needed]
    fillers = [g for g, v in enumerate(varies) if not v][: needed - len(keep)]
    return keep + fillers, len(keep)


def select_rows(batch: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The rows `rows` of TRL's generation output, every per-row entry cut alike.

    Per-sample image tensors are first split per row with TRL's own helper (as TRL does
    before it shuffles the batch) and joined again after; scalars (num_items_in_batch)
    pass through unchanged."""
    import torch
    from trl.trainer.utils import split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    def pick(value: Any) -> Any:
        if value is None or (isinstance(value, torch.Tensor) and value.ndim == 0):
            return value
        if isinstance(value, torch.Tensor):
            return value[torch.tensor(rows, device=value.device)]
        return [value[i] for i in rows]

    split = split_pixel_values_by_grid(batch)
    return unsplit_pixel_values_by_grid({key: pick(value) for key, value in split.items()})


def mask_rows(batch: dict[str, Any], rows: list[int]) -> None:
    """Zero the completion (and tool) mask of `rows`: no loss, normaliser or KL term sees
    them, and the forward attends to their prompts only."""
    for key in ("completion_mask", "tool_mask"):
        if key in batch and rows:
            batch[key][rows] = 0


def extra_prompts(dataset: Any, count: int, group_size: int, rng: random.Random) -> list[dict]:
    """`count` more prompts from the training set, each repeated `group_size` times in a row as
    TRL's RepeatSampler lays out a generation batch."""
    picks = [rng.randrange(len(dataset)) for _ in range(count)]
    return [dict(dataset[i]) for i in picks for _ in range(group_size)]


def keep_varying_groups(trainer: Any, output: dict[str, Any], batch_rows: int) -> dict[str, Any]:
    """TRL's generation output for `batch_rows` of this process's rows: its groups whose
    rewards vary, then masked fillers; `num_items_in_batch` (the token normaliser of the dapo,
    cispo and vespo losses) recounted over what is left; the two fractions logged."""
    size = trainer.num_generations
    varies = varying_groups(
        trainer._vlexp_rewards, trainer.reward_weights, size, trainer.multi_objective_aggregation
    )  # (groups of every process,)
    local = len(output["advantages"]) // size
    start = trainer.accelerator.process_index * local
    chosen, kept = fill_batch(varies[start : start + local].tolist(), batch_rows // size)
    batch = select_rows(output, [g * size + i for g in chosen for i in range(size)])
    mask_rows(batch, list(range(kept * size, batch_rows)))
    loss_mask = batch["completion_mask"] * batch.get("tool_mask", 1)
    batch["num_items_in_batch"] = trainer.accelerator.gather(loss_mask.sum()).sum()
    counts = trainer.accelerator.gather(loss_mask.new_tensor([kept, batch_rows // size])).view(
        -1, 2
    )
    metrics = trainer._metrics["train"]
    metrics["rollout/kept_fraction"].append(varies.float().mean().item())
    metrics["rollout/filled_fraction"].append((counts[:, 0].sum() / counts[:, 1].sum()).item())
    return batch
