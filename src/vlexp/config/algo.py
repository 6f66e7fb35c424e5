"""The algorithm seam: what an algorithm needs, read from what its `algo/*.yaml` declares.

Behaviour never follows `algo.name` (a label for run names and logs) or a `_target_` prefix:
a renamed copy of `algo=ppo`, or a user's `GRPOTrainer` subclass in `algo.trainer`, gets
exactly the checks, metrics and resume handling of the file it came from.

Every `algo/*.yaml` declares, next to its trainer and args:

    kind: grpo         # record format the trainer consumes: sft | dpo | grpo (prompts) |
                       # kto (labelled completions, or pairs split into two)
    generates: true    # samples completions while training, scored by `reward.funcs`
    groups: true       # compares algo.args.num_generations completions per prompt (GRPO rule)
    reference: beta    # reference model: none | beta (only when algo.args.beta != 0) | always

and, only where it differs from `generates`:

    rewards: false     # generates, but nothing from `reward.funcs` scores it (distillation:
                       # the teacher's distribution is the signal); defaults to `generates`
    one_image: true    # the trainer reads exactly one image per prompt, from an `image` column
    videos: false      # the trainer reads images only: video records stop the run before
                       # the model loads (vlexp's PPO rollouts)
    unavailable: ...   # why this algorithm cannot run here (e.g. TRL's trainer takes no
                       # images): validation stops with it before anything loads

What the trainer class itself says (asked only once the trainer is imported, at run time):
`restores_own_weights(cls)` is true for trainers whose checkpoints load correctly without
vlexp's full-weight fix (vlexp's PPO and reward-model trainers set
`vlexp_restores_own_weights = True`); every other trainer, TRL's or a user's subclass of
one, resumes through `transformers.Trainer` and gets the fix in vlexp.recipe.resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("sft", "dpo", "grpo", "kto")
REFERENCES = ("none", "beta", "always")
DECLARED = ("kind", "generates", "groups", "reference")
# Sequences one record puts through the forward that trains (kept for backward): a DPO pair
# its chosen and rejected. A KTO row is one labelled completion (a pair was already split into
# two rows); its KL estimate (the prompt with a neighbour's completion) runs without gradients.
SEQUENCES_PER_RECORD = {"sft": 1, "dpo": 2, "grpo": 1, "kto": 1}


@dataclass(frozen=True)
class Algorithm:
    """The declared facts of `cfg.algo` (see the module docstring)."""

    name: str
    kind: str
    generates: bool
    groups: bool
    reference: str
    args: Any
    rewards: bool = False  # `reward.funcs` score its completions (see the module docstring)
    one_image: bool = False  # one image per prompt, in an `image` column (see above)
    videos: bool = True  # the trainer carries video records (see above)

    def uses_reference(self) -> bool:
        """Whether a reference model is held (for the KL term or the DPO-style loss)."""
        if self.reference == "always":
            return True
        return self.reference == "beta" and float(self.args.get("beta", 0.0) or 0.0) != 0.0

    def sequences_per_record(self) -> int:
        """Sequences forwarded per record: DPO-format pairs forward chosen and rejected."""
        return SEQUENCES_PER_RECORD[self.kind]

    def completion_budget(self) -> int:
        """Tokens generated per prompt while training (0 for algorithms that do not generate)."""
        return int(self.args.get("max_completion_length") or 0) if self.generates else 0


def of(cfg: Any) -> Algorithm:
    """The declared facts of `cfg.algo`; `problems(cfg)` reports missing or bad declarations."""
    algo = cfg.algo
    return Algorithm(
        name=str(algo.get("name", "")),
        kind=str(algo.get("kind")),
        generates=bool(algo.get("generates", False)),
        groups=bool(algo.get("groups", False)),
        reference=str(algo.get("reference", "none")),
        args=algo.get("args") or {},
        rewards=bool(algo.get("rewards", algo.get("generates", False))),
        one_image=bool(algo.get("one_image", False)),
        videos=bool(algo.get("videos", True)),
    )


def problems(cfg: Any) -> list[str]:
    """Declarations an algo file must make, with their allowed values."""
    algo = cfg.algo
    found = []
    missing = [key for key in DECLARED if algo.get(key) is None]
    if missing:
        found.append(
            f"algo.{', algo.'.join(missing)} not declared: every algo file states kind (record "
            "format: sft | dpo | grpo | kto), generates (true | false), groups (true | false) and "
            "reference (none | beta | always); see conf/algo/grpo.yaml"
        )
    if algo.get("kind") is not None and algo.kind not in KINDS:
        found.append(f"algo.kind={algo.kind}: must be one of {', '.join(KINDS)}")
    if algo.get("reference") is not None and algo.reference not in REFERENCES:
        found.append(f"algo.reference={algo.reference}: must be one of {', '.join(REFERENCES)}")
    for key in ("generates", "groups", "rewards", "one_image", "videos"):
        if algo.get(key) is not None and not isinstance(algo.get(key), bool):
            found.append(f"algo.{key}={algo.get(key)}: must be true or false")
    if algo.get("rewards") and not algo.get("generates"):
        found.append("algo.rewards=true needs algo.generates=true: rewards score generated text")
    if algo.get("groups") and not algo.get("generates"):
        found.append(
            "algo.groups=true needs algo.generates=true: groups are of generated completions"
        )
    return found


def trainer_class(cfg: Any) -> type:
    """The class `algo.trainer` builds (imports it: call at run time, not while validating)."""
    import functools

    from hydra.utils import instantiate

    factory = instantiate(cfg.algo.trainer)
    return factory.func if isinstance(factory, functools.partial) else factory


def restores_own_weights(trainer_cls: Any) -> bool:
    """True for trainers whose checkpoints need no full-weight fix on resume (see above)."""
    return bool(getattr(trainer_cls, "vlexp_restores_own_weights", False))


def teacher_path(cfg: Any) -> str | None:
    """The teacher model of algorithms that learn from one (the `teacher` node, set by e.g.
    `algo=distill`): a model dir or hub id; a vlexp run dir stands for its `final/` model."""
    from pathlib import Path

    teacher = cfg.get("teacher")
    if teacher is None or teacher.get("name_or_path") is None:
        return None
    given = str(teacher.name_or_path)
    final = Path(given).expanduser() / "final"
    return str(final) if final.is_dir() else given
