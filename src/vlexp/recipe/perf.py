"""How fast a run goes: `perf/*` and `timing_s/*` next to TRL's metrics, every logging step.

    perf/tokens_per_second_per_gpu   tokens of the training forward passes on this GPU (padding
                                     excluded, image tokens included; GRPO: prompt + completion)
                                     over the seconds of the optimizer steps since the last log
    perf/mfu                         (GPU) model FLOPs of those passes / seconds / the GPU's dense
                                     bf16 peak; FLOPs as bench/gpu.py counts them (`train_flops`)
    perf/max_memory_allocated_gb     (GPU) torch's peak allocated / reserved memory so far, GiB
    perf/max_memory_reserved_gb
    timing_s/step                    seconds per optimizer step
    timing_s/generate                (algorithms that generate: GRPO family, PPO) seconds per step
    timing_s/logprobs                in sampling, in the no-grad forward passes (old-policy and
    timing_s/update                  reference log-probs, PPO values), and in the update (forward
                                     + backward of the loss, optimizer step not included)

The same names as verl and EasyR1 report (`perf/mfu`, `perf/max_memory_allocated_gb`, `timing_s/*`),
so runs compare with theirs. MFU counts forward + backward FLOPs (6 per weight per token,
PaLM's convention, frozen or LoRA weights included) of the weights each token passes through:
a MoE's router and its top_k routed experts (not all of them), shared experts, and under ZeRO-3
the whole weights (`ds_numel`), not the rank's shard. Checked against torch's FlopCounterMode
on every tiny family and a hand count on the shipped configs (tests/unit/test_perf.py). Only
the training passes count: for GRPO and PPO the generation and log-prob passes do not, nor does
Qwen3.5's Gated-DeltaNet recurrence (not a weight), so MFU is a lower bound of what the GPU
did. Where the GPU is not in `PEAK_BF16_FLOPS`, set VLEXP_PEAK_TFLOPS (dense bf16, TFLOP/s).
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("vlexp")

GIB = 1024**3
# Dense bf16 peak FLOP/s from the vendors' datasheets (no sparsity); first match wins.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 FLOP/s of a GPU by its name (VLEXP_PEAK_TFLOPS overrides); None if unknown."""
    override = os.environ.get("VLEXP_PEAK_TFLOPS")
    if override:
        return float(override) * 1e12
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), None)


# --- FLOPs ----------------------------------------------------------------------------------


@dataclass
class FlopModel:
    """Per-token and per-patch matmul sizes of a model, read once from its modules.

    Text: every matmul weight a token passes through outside the vision tower (the Linear
    layers: decoder projections, shared experts, LM head, a critic's score head; a MoE's router
    and its top_k routed experts) costs 6 FLOPs per weight per token (ZeRO-3: the whole
    weight, `ds_numel`, not the rank's shard), and each attention layer 12 x width x
    the row's length per token (scores and values, forward + backward, no causal discount).
    Vision: every Linear/Conv of the tower but the merger costs 6 per weight per patch, the
    merger 6 per weight per merged token, and each block's attention 12 x width x the
    patches it attends to (a window, or the whole image for full-attention blocks).
    """

    text_weights: int = 0
    attention_widths: list[int] = field(default_factory=list)  # one per text attention layer
    vision_weights: int = 0
    merger_weights: int = 0
    vision_width: int = 0
    vision_attention: list[int | None] = field(default_factory=list)  # window patches or None
    merge: int = 1

    def train_flops(self, lengths: list[int], grids: list[tuple[int, int, int]]) -> float:
        """Forward + backward FLOPs of rows of `lengths` tokens and images of (t, h, w) patches."""
        flops = sum(6 * self.text_weights * n for n in lengths)
        flops += 12 * sum(self.attention_widths) * sum(n * n for n in lengths)
        for t, h, w in grids:
            patches = t * h * w
            flops += 6 * self.vision_weights * patches
            flops += 6 * self.merger_weights * patches // self.merge**2
            attended = sum(
                patches if win is None else min(win, patches) for win in self.vision_attention
            )
            flops += 12 * self.vision_width * attended * patches
        return float(flops)


def flop_model(model: Any) -> FlopModel:
    """The FlopModel of a (possibly PEFT- or actor-critic-wrapped) VLM."""
    import torch

    out = FlopModel()
    vision_cfg = _find_vision_config(model)
    routing = _routing(model)
    # The tower and what maps its features into the text model: Qwen's `visual` (its merger
    # inside), or a tower plus a `multi_modal_projector` (InternVL, LLaVA-OneVision, Gemma 3)
    # or a `merger` (MiniCPM-V).
    visual = re.compile(
        r"(^|.*\.)(visual|vision_tower|vision_model|multi_modal_projector|merger)(\.|$)"
    )
    for name, module in model.named_modules():
        in_vision = bool(visual.match(name))
        if isinstance(
            module, torch.nn.Linear | torch.nn.Conv3d | torch.nn.Conv2d | torch.nn.Conv1d
        ):
            size = _numel(module.weight)
            if not in_vision:
                # Text convolutions slide along the tokens (Qwen3.5's Gated DeltaNet: depthwise
                # over the q/k/v channels), one weight use per token, as a Linear's.
                text = isinstance(module, torch.nn.Linear | torch.nn.Conv1d)
                out.text_weights += size if text else 0
            elif "merger" in name or "multi_modal_projector" in name:
                out.merger_weights += size
            else:
                out.vision_weights += size
        elif not in_vision and (routed := _routed_weights(module, *routing)):
            out.text_weights += routed
        elif (
            not in_vision
            and type(module).__name__.endswith("Attention")
            and hasattr(module, "o_proj")
        ):
            out.attention_widths.append(module.o_proj.in_features)
    if vision_cfg is not None:
        # Qwen towers say `depth`; SigLIP (Gemma 3) says num_hidden_layers and merges nothing.
        depth = getattr(vision_cfg, "depth", None) or vision_cfg.num_hidden_layers
        out.vision_width = getattr(vision_cfg, "embed_dim", None) or vision_cfg.hidden_size
        out.merge = getattr(vision_cfg, "spatial_merge_size", None) or 1
        full = getattr(vision_cfg, "fullatt_block_indexes", None)
        patch = vision_cfg.patch_size  # InternViT says [14, 14]
        patch = patch[0] if isinstance(patch, list | tuple) else patch
        window = (getattr(vision_cfg, "window_size", 0) or 0) // patch
        windowed = window > 0 and full is not None
        out.vision_attention = [
            (window * window if windowed and block not in full else None) for block in range(depth)
        ]
    return out


def _numel(param: Any) -> int:
    """Elements of a parameter, whole: under ZeRO-3 a rank holds an empty placeholder and
    DeepSpeed keeps the full count in `ds_numel`."""
    return int(getattr(param, "ds_numel", None) or param.numel())


def _routed_weights(module: Any, top_k: int, experts: int) -> int:
    """Matmul weights one token passes through in a MoE block's parts that are not Linear
    layers: the router's (`*Router`: an [experts, hidden] matrix, every token) and the routed
    experts' (stacked [experts, out, in] tensors: top_k of the experts per token). Shared
    experts are Linear layers, counted as such."""
    if not experts:
        return 0
    own = list(module.parameters(recurse=False))
    if type(module).__name__.endswith("Router"):
        return sum(_numel(p) for p in own if len(_shape(p)) == 2)
    stacked = [p for p in own if len(_shape(p)) == 3 and _shape(p)[0] == experts]
    return sum(_numel(p) * top_k // experts for p in stacked)


def _shape(param: Any) -> tuple[int, ...]:
    return tuple(getattr(param, "ds_shape", None) or param.shape)


def _routing(model: Any) -> tuple[int, int]:
    """(routed experts per token, routed experts per layer) of the text model; (0, 0) dense."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "get_text_config"):
            text = config.get_text_config()
            experts = getattr(text, "num_experts", None) or getattr(text, "num_local_experts", 0)
            return int(getattr(text, "num_experts_per_tok", 0) or 0), int(experts or 0)
    return 0, 0


def _find_vision_config(model: Any):
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "vision_config", None) is not None:
            return config.vision_config
    return None


# --- counting what the training passes process ---------------------------------------------


@dataclass
class Interval:
    """What happened since the last log: optimizer steps, seconds, tokens, FLOPs, phases."""

    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0
    flops: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)


class PerfCallback(TrainerCallback):
    """Adds perf/* and timing_s/* to every training log (see the module docstring).

    Its metrics reach the logs through the trainer's class (`PerfMixin.log`), before any
    callback sees them, so metrics.jsonl, W&B and TensorBoard get the same numbers.
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.interval = Interval()
        self.flops: FlopModel | None = None
        self.peak: float | None = None
        self._step_start: float | None = None
        self._hooks: list = []
        self.gauges: dict[str, Any] = {}  # name -> callable: its value, logged every step

    # The phase clock (PhaseClock) reports here.
    def add_phase(self, name: str, seconds: float) -> None:
        self.interval.phases[name] = self.interval.phases.get(name, 0.0) + seconds

    def add_gauge(self, name: str, read: Any) -> None:
        """Log `read()` as `name` at every training log (e.g. perf/recompiles)."""
        self.gauges[name] = read

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def watch(self, model: Any) -> None:
        """Count the tokens (and, on GPU, FLOPs) of `model`'s grad-enabled forward passes."""
        if self.cuda:
            import torch

            self.flops = flop_model(model)
            self.peak = peak_flops(torch.cuda.get_device_name())
            if self.peak is None:
                log.warning(
                    "perf/mfu not logged: no bf16 peak known for %s (set VLEXP_PEAK_TFLOPS)",
                    torch.cuda.get_device_name(),
                )
        self._hooks.append(model.register_forward_pre_hook(self._count, with_kwargs=True))

    def _count(self, module, args, kwargs) -> None:
        import torch

        if not (torch.is_grad_enabled() and module.training):
            return
        # TRL's forward redirection (DistillationTrainer) calls the module with the module
        # itself first: count only tensors.
        ids = kwargs.get("input_ids", args[0] if args else None)
        if not isinstance(ids, torch.Tensor) or ids.dim() == 0:
            ids = None
        mask = kwargs.get("attention_mask")
        if not isinstance(mask, torch.Tensor):
            mask = None
        if mask is not None:
            lengths = [int(n) for n in mask.sum(-1).tolist()]
        elif ids is not None:
            lengths = [int(ids.shape[-1])] * (ids.shape[0] if ids.dim() > 1 else 1)
        else:
            return
        self.interval.tokens += sum(lengths)
        if self.flops is not None:
            grids = []
            for key in ("image_grid_thw", "video_grid_thw"):
                grid = kwargs.get(key)
                if grid is not None:
                    grids += [tuple(int(x) for x in row) for row in grid.tolist()]
            self.interval.flops += self.flops.train_flops(lengths, grids)

    def on_step_begin(self, args, state, control, **kwargs):
        self.sync()
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_start is None:
            return
        self.sync()
        self.interval.seconds += time.perf_counter() - self._step_start
        self.interval.steps += 1
        self._step_start = None

    def on_train_end(self, args, state, control, **kwargs):
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def metrics(self) -> dict[str, float]:
        """The interval's metrics (then a new interval starts)."""
        done, self.interval = self.interval, Interval()
        out: dict[str, float] = {}
        if done.steps and done.seconds > 0:
            out["perf/tokens_per_second_per_gpu"] = done.tokens / done.seconds
            if self.peak and done.flops:
                out["perf/mfu"] = done.flops / done.seconds / self.peak
            out["timing_s/step"] = done.seconds / done.steps
            for name, seconds in sorted(done.phases.items()):
                out[f"timing_s/{name}"] = seconds / done.steps
        out.update({name: float(read()) for name, read in self.gauges.items()})
        if self.cuda:
            import torch

            out["perf/max_memory_allocated_gb"] = torch.cuda.max_memory_allocated() / GIB
            out["perf/max_memory_reserved_gb"] = torch.cuda.max_memory_reserved() / GIB
        return out


# --- composed into the run's trainer class (vlexp.recipe.trainers) --------------------------
#
# TRL times its phases with `profiling_context`, which sends `profiling/Time taken: ...`
# straight to W&B/MLflow and never into the logs dict, so metrics.jsonl and TensorBoard would
# not see them. vlexp's trainer class overrides (tests/unit/test_patches.py holds the contract):
#   training_step      (transformers.Trainer, public)       -> one micro-step in total
#   _prepare_inputs    (GRPOTrainer/RLOOTrainer/PPOTrainer)  -> the rollout part of it
#   generate           (the policy's class, vlexp.rollout)  -> generation
#   forward hooks      (policy, PPO's policy+critic, reference model) -> no-grad passes
#                      outside generation = old-policy / reference log-probs, values
# update = training_step - _prepare_inputs.
ROLLOUT_METHODS = ("_prepare_inputs", "training_step")


class PhaseClock:
    """The `generate`, `logprobs` and `update` seconds of each training step, reported to a
    PerfCallback (`add_phase`, `sync`). The trainer's class and the policy's class call it."""

    def __init__(self, perf: PerfCallback) -> None:
        self.perf = perf
        self.prepare = 0.0  # seconds in _prepare_inputs during this micro-step
        self.in_step = False
        self.generating = False
        self.depth = 0  # nesting of watched no-grad forwards (outermost times the pass)
        self.start = 0.0

    def timed_prepare(self, prepare: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return prepare(*args, **kwargs)
        finally:
            self.prepare += time.perf_counter() - start

    def timed_step(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        self.prepare, self.in_step = 0.0, True
        self.perf.sync()
        start = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.perf.sync()
            self.in_step = False
            self.perf.add_phase("update", time.perf_counter() - start - self.prepare)

    def timed_generate(self, generate: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.in_step:  # evaluation callbacks generate too: not a training phase
            return generate(*args, **kwargs)
        self.perf.sync()
        start = time.perf_counter()
        self.generating = True
        try:
            return generate(*args, **kwargs)
        finally:
            self.perf.sync()
            self.generating = False
            self.perf.add_phase("generate", time.perf_counter() - start)

    def before(self, module, args, kwargs) -> None:
        import torch

        if self.in_step and not self.generating and not torch.is_grad_enabled():
            self.depth += 1
            if self.depth == 1:
                self.perf.sync()
                self.start = time.perf_counter()

    def after(self, module, args, kwargs, output) -> None:
        if self.depth:
            self.depth -= 1
            if self.depth == 0:
                self.perf.sync()
                self.perf.add_phase("logprobs", time.perf_counter() - self.start)

    def watch(self, modules: list[Any]) -> None:
        """Time the no-grad passes of `modules` outside generation (each module once)."""
        import torch

        for module in {id(m): m for m in modules}.values():
            if isinstance(module, torch.nn.Module):
                module.register_forward_pre_hook(self.before, with_kwargs=True)
                module.register_forward_hook(self.after, with_kwargs=True)


class PerfMixin:
    """perf/* and timing_s/* in every training log of the trainer (see the module docstring).

    `vlexp_perf` is the run's PerfCallback (also among the trainer's callbacks, for the step
    times): its metrics go into `logs` in `log`, before any callback sees the dict, so
    metrics.jsonl, W&B and TensorBoard all get them whatever the callbacks' order."""

    vlexp_perf: PerfCallback | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.vlexp_perf.watch(self.model)

    def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
        if not any(key.startswith("eval") for key in logs):
            logs.update(self.vlexp_perf.metrics())
        return super().log(logs, *args, **kwargs)


class PhaseTimersMixin:
    """The rollout phases of algorithms that generate: `update` = training_step -
    _prepare_inputs, `logprobs` = no-grad passes of the policy, critic and reference outside
    generation; `generate` is timed by the policy's class (vlexp.rollout)."""

    vlexp_clock: PhaseClock | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy = getattr(self.model, "policy", self.model)  # PPO: actor-critic wrapper
        self.vlexp_clock.watch([self.model, policy, getattr(self, "ref_model", None)])

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        return self.vlexp_clock.timed_step(super().training_step, *args, **kwargs)

    def _prepare_inputs(self, *args: Any, **kwargs: Any) -> Any:
        return self.vlexp_clock.timed_prepare(super()._prepare_inputs, *args, **kwargs)
