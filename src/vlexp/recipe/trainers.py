"""The run's trainer class, composed before the trainer exists.

One class per run: `algo.trainer`'s class (a TRL trainer, vlexp's PPO, a user's subclass)
with vlexp's mixins in front, each holding one behaviour:

    DynamicSamplingMixin, VideoGRPOMixin, TextPromptsMixin  GRPO family (vlexp.patches)
    ToolFailuresMixin                   GRPO with env= tools: message failures counted
    ImageCountMixin                     GRPO, RLOO: LLaVA-OneVision's images per prompt
    PackedImagesMixin                   GRPO, RLOO: MiniCPM-V's packed images, per prompt
    VideoCollatorMixin                  SFT/DPO-style trainers on videos (algorithms.video)
    PerfMixin, PhaseTimersMixin         perf/*, timing_s/* (recipe.perf)
    AtomicCheckpoints                   checkpoints written aside, published whole
    LiveViewMixin                       no transformers progress bar: vlexp's LiveView
    RouterLogitsPerForwardMixin         MoE: router logits per forward (vlexp.patches)

The run's parts the mixins use (the perf callback, the video carrier, ...) are attributes of
the class; vlexp's callbacks go in through the constructor's `callbacks=`. Nothing is assigned
onto the trainer once it is built (tests/unit/test_composition.py).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from vlexp import patches
from vlexp.algorithms.packed_images import PackedImagesMixin
from vlexp.algorithms.video import VideoCollatorMixin
from vlexp.recipe.checkpoints import AtomicCheckpoints
from vlexp.recipe.console import LiveViewMixin
from vlexp.recipe.perf import PerfMixin, PhaseTimersMixin

log = logging.getLogger("vlexp")


@dataclass
class Parts:
    """What the mixins of one run's trainer class hold (None: that mixin is left out)."""

    perf: Any = None  # recipe.perf.PerfCallback
    clock: Any = None  # recipe.perf.PhaseClock (algorithms that generate)
    prompt_text: Any = str  # GRPO's completions table: a prompt as text
    video_carrier: Any = None  # algorithms.video.Carrier (GRPO family on videos)
    video_budget: Any = None  # data.videos.Budget (SFT/DPO-style trainers on videos)
    dynamic_sampling: Any = None  # algorithms.dynamic_sampling.DynamicSampling
    tools: bool = False  # env=: the GRPO trainer runs TRL's tool loop
    packed_images: bool = False  # the family packs a call's images into one row (MiniCPM-V)


def grpo_mixins(parts: Parts) -> tuple[tuple[type, ...], dict[str, Any]]:
    """The GRPO family's mixins, outermost first, and the class attributes they read."""
    mixins: tuple[type, ...] = (patches.TextPromptsMixin, patches.ImageCountMixin)
    if parts.packed_images:  # innermost: every other mixin sees rows that carry their images
        mixins = (*mixins, PackedImagesMixin)
    namespace: dict[str, Any] = {"prompt_as_text": staticmethod(parts.prompt_text)}
    if parts.tools:
        mixins = (patches.ToolFailuresMixin, *mixins)
    if parts.video_carrier is not None:
        mixins = (patches.VideoGRPOMixin, *mixins)
        namespace["video_carrier"] = parts.video_carrier
    if parts.dynamic_sampling is not None:  # outermost: the video mixin processes every row it adds
        mixins = (patches.DynamicSamplingMixin, *mixins)
        namespace["dynamic_sampling"] = parts.dynamic_sampling
    return mixins, namespace


def trainer_class(trainer_cls: type, parts: Parts) -> type:
    """`trainer_cls` with vlexp's mixins in front (see the module docstring). The class keeps
    the trainer's name (`Video` in front when it carries videos: the log says which)."""
    from trl import GRPOTrainer

    mixins: tuple[type, ...] = ()
    namespace: dict[str, Any] = {}
    if issubclass(trainer_cls, GRPOTrainer):
        mixins, namespace = grpo_mixins(parts)
    elif parts.video_budget is not None:
        mixins, namespace = (VideoCollatorMixin,), {"video_budget": parts.video_budget}
    elif hasattr(trainer_cls, "_get_per_token_logps_and_entropies"):  # TRL's RLOOTrainer
        mixins = (patches.ImageCountMixin,)
        mixins += (PackedImagesMixin,) if parts.packed_images else ()
    if parts.perf is not None:
        mixins = (*mixins, PerfMixin)
        namespace["vlexp_perf"] = parts.perf
    if parts.clock is not None:
        mixins = (*mixins, PhaseTimersMixin)
        namespace["vlexp_clock"] = parts.clock
    mixins = (*mixins, AtomicCheckpoints, LiveViewMixin, patches.RouterLogitsPerForwardMixin)
    video = parts.video_carrier is not None or parts.video_budget is not None
    name = f"Video{trainer_cls.__name__}" if video else trainer_cls.__name__
    cls = type(name, (*mixins, trainer_cls), namespace)
    cls.__module__ = trainer_cls.__module__  # tracebacks and reprs name the trainer's module
    return cls


def factory(algo_trainer: Any, trainer_cls: type, parts: Parts) -> Any:
    """`algo.trainer` (built by instantiate, usually a partial) on the composed class: its other
    keyword arguments are kept."""
    keywords = algo_trainer.keywords if isinstance(algo_trainer, functools.partial) else {}
    if parts.video_carrier is not None:
        log.info("videos: %s with the video mixin (budget %s)", trainer_cls.__name__,
                 parts.video_carrier)  # fmt: skip
    if parts.dynamic_sampling is not None:
        log.info(
            "DAPO dynamic sampling: %dx the prompts per generation",
            parts.dynamic_sampling.oversample,
        )
    return functools.partial(trainer_class(trainer_cls, parts), **keywords)
