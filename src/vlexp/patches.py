"""Every place vlexp reaches into another library's internals, in one module.

Each patch names the version it was written against and the upstream behaviour it works
around; tests/unit/test_patches.py holds one contract test per patch that fails with a clear
message when an upgrade changes the thing patched. Moving to a new TRL or transformers
release means running those tests first (see docs/development.md, "Moving to a new TRL release").

Only the reaches live here (version shims, and the GRPO mixins' touch points on TRL's private
methods); vlexp's own behaviour lives in the module that owns it: the run's trainer class in
vlexp.recipe.trainers, atomic checkpoints in vlexp.recipe.checkpoints, the phase timers in
vlexp.recipe.perf, the rollout engine in vlexp.rollout. Their overrides of transformers' and
TRL's private methods have their contract tests in tests/unit/test_patches.py too.

Nothing here is imported at module level: torch, transformers, trl and qwen-vl-utils load
inside the functions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("vlexp")

TESTED = {"trl": "1.16", "transformers": "5.24", "qwen-vl-utils": "0.0.14"}


# --- transformers: checkpoint key conversion for vlexp's value-head classes --------------
def share_checkpoint_conversion(class_name: str, source: str) -> None:
    """Load hub checkpoints into `class_name` with the key renaming `source` uses.

    transformers 5.24 maps the legacy hub layout of Qwen2/2.5-VL (`visual.*`,
    `model.layers.*`) onto its modules only for the registered ForConditionalGeneration
    classes; vlexp's value-head classes register the same mapping under their own name.
    """
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    register_checkpoint_conversion_mapping(
        class_name, get_checkpoint_conversion_mapping(source), overwrite=True
    )


# --- transformers: MoE experts implementation for vlexp's value-head classes ------------
def experts_implementation_like(cls: type, backbone: type) -> None:
    """Let `cls` (a value-head class built at run time) pick the experts implementation
    (`grouped_mm`, ...) as its MoE `backbone` does.

    transformers 5.24 decides whether a class may set it by searching the source of the
    class's module for `@use_experts_implementation`
    (`PreTrainedModel._can_set_experts_implementation`, cached in
    `_can_set_experts_implementation_cached_value`); vlexp.algorithms.reward_model's source
    has none, so building a Qwen3-VL-MoE value head from a loaded model's config (which names
    `grouped_mm`) raised "does not support setting experts implementation". The answer is
    the backbone's: the experts are its modules.
    """
    cls._can_set_experts_implementation_cached_value = backbone._can_set_experts_implementation()


# --- transformers: load a frozen model whole while a ZeRO-3 config is live ---------------
@contextmanager
def zero3_init_off() -> Iterator[None]:
    """transformers 5.24 partitions every `from_pretrained` while a ZeRO-3 config is live
    (`integrations.deepspeed._hf_deepspeed_config_weak_ref`); a frozen scorer (reward=model)
    must load whole on every rank, so the reference is cleared meanwhile."""
    from transformers.integrations import deepspeed as ds

    saved = ds._hf_deepspeed_config_weak_ref
    ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        ds._hf_deepspeed_config_weak_ref = saved


# --- transformers: logging integrations may fail, training goes on ------------------------
# Callback events a logging integration implements (transformers 5.24 TrainerCallback).
LOGGER_EVENTS = (
    "on_init_end",
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_step_begin",
    "on_step_end",
    "on_substep_end",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_evaluate",
    "on_predict",
    "on_save",
    "on_log",
    "on_prediction_step",
    "on_push_begin",
)


def guard_logging_integrations() -> list[str]:
    """Make every reporting integration (W&B, TensorBoard, ...) unable to stop a run.

    transformers 5.24 builds these callbacks itself from `report_to`
    (`integration_utils.INTEGRATION_TO_CALLBACK`) and lets their exceptions end training. Each
    event method of those classes is wrapped once per process: the first exception of an
    instance is logged and switches that instance off; metrics.jsonl keeps every row.
    """
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    guarded = []
    for cls in set(INTEGRATION_TO_CALLBACK.values()):
        for event in LOGGER_EVENTS:
            method = cls.__dict__.get(event)
            if method is not None and not getattr(method, "_vlexp_guarded", False):
                setattr(cls, event, _guarded_event(method, cls.__name__, event))
        guarded.append(cls.__name__)
    return sorted(guarded)


def _guarded_event(method: Callable, name: str, event: str) -> Callable:
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if getattr(self, "_vlexp_failed", False):
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # a logger must never end a run; metrics.jsonl has the row
            # Switched off for the rest of the run: W&B's client already buffers and retries
            # network blips itself, so what reaches here persists, and retrying (e.g. a
            # wandb.init with its 90 s timeout at every log step) would stall training.
            log.warning(
                "%s.%s failed (%s: %s); %s is switched off for this run, training goes on "
                "and metrics.jsonl keeps every row",
                name,
                event,
                type(err).__name__,
                err,
                name,
            )
            self._vlexp_failed = True
            return None

    call._vlexp_guarded = True
    return call


# --- transformers: log a row outside the trainer's own log() -------------------------------
def log_row(trainer: Any, args: Any, state: Any, control: Any, logs: dict) -> None:
    """What `Trainer.log` does (transformers 5.24), minus `GRPOTrainer.log`'s flush of the
    pending training metrics: append to `state.log_history` and call every callback's on_log.
    The handler clears `control.should_log`, which would drop this step's training row."""
    state.log_history.append({**logs, "step": state.global_step})
    should_log = control.should_log
    trainer.callback_handler.on_log(args, state, control, logs=logs)
    control.should_log = should_log


# --- TRL GRPOTrainer: prompts of the completions table as text ------------------------------
class TextPromptsMixin:
    """TRL 1.16 keeps the prompts of logged completions in `self._logs["prompt"]` as message
    lists whose content mixes {"type": "image"} and text parts; W&B's type check rejects the
    second such row of its completions table and the run dies at its first logging step.
    `log` turns them into text (`prompt_as_text`, vlexp.data.messages.prompt_text) before
    GRPOTrainer.log builds the table."""

    prompt_as_text: Callable[[Any], str] = str

    def log(self, logs: dict, *args: Any, **kwargs: Any) -> None:
        prompts = getattr(self, "_logs", {}).get("prompt")
        if prompts:  # a deque: replace its items in place (idempotent on text)
            texts = [self.prompt_as_text(p) for p in prompts]
            prompts.clear()
            prompts.extend(texts)
        return super().log(logs, *args, **kwargs)


# --- TRL GRPOTrainer: video tensors through generation and the log-prob passes ------------
class VideoGRPOMixin:
    """TRL 1.16's GRPOTrainer forwards a fixed list of image fields to the model. Three
    private methods are extended so each sample's video fields travel with its row:
    `_generate_and_score_completions` (prompts are processed with the batch's videos),
    `_compute_loss` and `_get_per_token_logps_and_entropies` (each chunk of rows gets its
    own video tensors). What vlexp does with the videos is `video_carrier`'s
    (vlexp.algorithms.video.Carrier); this class only holds the TRL touch points."""

    video_carrier: Any = None

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        batch = self.video_carrier.batch(inputs, self.processing_class)
        if batch is None:
            return super()._generate_and_score_completions(inputs)
        processor = self.processing_class
        self._video_rows = batch.rows
        self.processing_class = batch.processor
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self.processing_class = processor
            self._video_rows = None
        output["video_fields"] = batch.rows  # per sample: TRL shuffles and splits it too
        return output

    def _compute_loss(self, model: Any, inputs: dict) -> Any:
        self._video_rows = inputs.get("video_fields")
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._video_rows = None

    def _get_per_token_logps_and_entropies(
        self, model: Any, input_ids: Any, *args: Any, **kwargs: Any
    ):
        rows = getattr(self, "_video_rows", None)
        if rows and any(rows):
            # TRL's forward kwargs of a mixed batch carry the whole batch's video tensors; the
            # per-sample ones replace them (and mm_token_type_ids, rebuilt per chunk).
            for key in self.video_carrier.forward_keys:
                kwargs.pop(key, None)
            model = self.video_carrier.model_with_videos(model, rows, self.processing_class)
        return super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)


# --- TRL GRPOTrainer: DAPO's dynamic sampling --------------------------------------------
class DynamicSamplingMixin:
    """TRL 1.16's GRPOTrainer generates and scores one generation batch in the private
    `_generate_and_score_completions(inputs)` and computes the rewards of every process's rows
    in `_calculate_rewards` (returns (completions, functions)). The mixin hands the first more
    prompts and cuts its output back to the batch; the second is only read. Which prompts and
    what is kept is `dynamic_sampling`'s (vlexp.algorithms.dynamic_sampling.DynamicSampling)."""

    dynamic_sampling: Any = None  # vlexp.algorithms.dynamic_sampling.DynamicSampling

    def _calculate_rewards(self, *args: Any, **kwargs: Any) -> Any:
        self._vlexp_rewards = super()._calculate_rewards(*args, **kwargs)
        return self._vlexp_rewards

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        if not self.model.training:  # evaluation scores every prompt it is given
            return super()._generate_and_score_completions(inputs)
        sampling = self.dynamic_sampling
        output = super()._generate_and_score_completions([*inputs, *sampling.more(self, inputs)])
        return sampling.keep(self, output, len(inputs))


# --- TRL GRPOTrainer: tool failures that came back as messages ----------------------------
class ToolFailuresMixin:
    """TRL 1.16's `_tool_call_loop` counts a call as failed (`tools/failure_frequency`) only
    when the tool raises. vlexp's tools turn every failure into a message to the model
    (vlexp.environments.ToolCalls) and count it in the environment's `failures`; this adds
    those of the batch to the count TRL returns (its sixth value)."""

    def _tool_call_loop(self, *args: Any, **kwargs: Any) -> Any:
        environments = self.environments or []
        before = sum(getattr(env, "failures", 0) for env in environments)
        out = list(super()._tool_call_loop(*args, **kwargs))
        out[5] += sum(getattr(env, "failures", 0) for env in environments) - before
        return tuple(out)


# --- TRL GRPOTrainer / RLOOTrainer: LLaVA-OneVision's images per prompt ---------------------
class ImageCountMixin:
    """TRL 1.16's GRPO and RLOO trainers hand every processor output but `input_ids` and
    `attention_mask` to `_get_per_token_logps_and_entropies`, whose fixed signature has no
    `batch_num_images` (LlavaOnevisionProcessor's images per prompt): a TypeError at the first
    step. Without it the model tiles every image (AnyRes), which is what the processor wrote
    for a prompt with one image; a prompt with several (one tile each) stops with the reason
    instead of a feature/token mismatch. Contract: tests/unit/test_patches.py."""

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        counts = kwargs.pop("batch_num_images", None)
        if counts is not None and any(int(n) > 1 for n in counts):
            raise ValueError(
                f"{type(self).__name__}: a prompt with {max(int(n) for n in counts)} images on "
                "LLaVA-OneVision: TRL 1.16's GRPO/RLOO trainers drop the processor's "
                "batch_num_images, so the model would tile images the processor did not; use "
                "one image per prompt with these trainers (SFT and DPO take several)"
            )
        return super()._get_per_token_logps_and_entropies(*args, **kwargs)


# --- qwen-vl-utils: choose the video reader ------------------------------------------------
def qwen_vl_utils_video_reader(backend: str, torchvision_fallback: Callable) -> None:
    """qwen-vl-utils 0.0.14 picks its reader once per process from the module global
    `FORCE_QWENVL_VIDEO_READER` (read at import, then cached by `get_video_reader_backend`).
    torchvision 0.25+ removed `torchvision.io.read_video`, which its torchvision reader calls;
    that reader is then replaced by `torchvision_fallback` (the same decoding through PyAV),
    whatever `backend` is: qwen-vl-utils retries a video its decord reader fails on with the
    torchvision reader."""
    import torchvision
    from qwen_vl_utils import vision_process

    if not hasattr(torchvision.io, "read_video"):
        vision_process.VIDEO_READER_BACKENDS["torchvision"] = torchvision_fallback
    vision_process.FORCE_QWENVL_VIDEO_READER = backend
    vision_process.get_video_reader_backend.cache_clear()


# --- liger-kernel 0.8.5 on transformers 5.24: the per-model output classes it imports ----
#
# liger-kernel (0.8.5) imports `Liger<Model>CausalLMOutputWithPast` in its Qwen2/2.5-VL (and
# Qwen3-VL) modules, classes it defines only when transformers still has the per-model
# `<Model>CausalLMOutputWithPast`. transformers 5.24 returns the shared
# `MultimodalCausalLMOutputWithPast` instead, so `apply_liger_kernel_to_qwen2_5_vl` fails
# with ImportError before patching anything (`memory=liger` died at the first step). The
# old names are given back as aliases of the class the models now return, before liger is
# imported. TRL turns liger's fused linear cross-entropy off (its own fused LM head), so the
# liger forward that returns these classes never runs. Contract: tests/unit/test_patches.py.
LIGER_OUTPUT_CLASSES = {
    "transformers.models.qwen2_vl.modeling_qwen2_vl": "Qwen2VLCausalLMOutputWithPast",
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl": "Qwen2_5_VLCausalLMOutputWithPast",
    "transformers.models.qwen3_vl.modeling_qwen3_vl": "Qwen3VLCausalLMOutputWithPast",
    "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe": "Qwen3VLMoeCausalLMOutputWithPast",
}


def liger_output_classes() -> list[str]:
    """Alias the per-model output classes liger imports; return the names aliased."""
    import importlib
    import sys

    aliased = []
    for module_name, old in LIGER_OUTPUT_CLASSES.items():
        try:
            modeling = importlib.import_module(module_name)
        except ImportError:
            continue
        shared = getattr(modeling, "MultimodalCausalLMOutputWithPast", None)
        if not hasattr(modeling, old) and shared is not None:
            setattr(modeling, old, shared)
            aliased.append(old)
    loaded = sys.modules.get("liger_kernel.transformers.model.output_classes")
    if aliased and loaded is not None:
        importlib.reload(loaded)  # imported before the aliases: define its classes now
    return aliased


# --- TRL + transformers: MoE router logits per forward, not in the model config ----------
def router_logits_per_forward(model: Any) -> bool:
    """Turn `output_router_logits` back off in the config after TRL turned it on; True if it was.

    TRL 1.16's SFTTrainer and DPOTrainer set `text_config.output_router_logits = True` on a
    mixture-of-experts model (and pass `output_router_logits=True` to every training forward,
    which is what computes the load-balancing loss). With the flag in the config,
    transformers 5.24's Qwen3-VL-MoE forward fails in batched `generate()` after the first
    token (its load-balancing loss pairs the (B, T) attention mask with (B, E) router logits:
    "The size of tensor a (4) must match the size of tensor b (120)"), so in-training
    evaluation and every later use of `final/` would break. Training keeps its aux loss.
    """
    text = model.config.get_text_config()
    if not getattr(text, "output_router_logits", False):
        return False
    text.output_router_logits = False
    return True


class RouterLogitsPerForwardMixin:
    """A trainer that leaves `output_router_logits` off in the model config once TRL's
    constructor has turned it on (`router_logits_per_forward`); a no-op for dense models."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        router_logits_per_forward(self.model)


# --- transformers: MoE expert transposes that see ZeRO-3's partitioned parameters ----------
def zero3_aware_expert_transpose() -> None:
    """Let checkpoint conversions compare with a ZeRO-3 parameter's full shape.

    transformers 5.24 loads Qwen3-VL-MoE checkpoints in either expert layout: its
    `Transpose(1, 2, check_dims=True)` conversion transposes `mlp.experts.*` unless the
    tensor already has the model parameter's shape. Under ZeRO-3 that parameter is a
    partitioned placeholder of shape (0,), so a checkpoint saved by transformers 5 (already in
    the model's layout, e.g. vlexp's `final/` or the tiny MoE) is transposed anyway and fails
    with "size mismatch for ...experts.gate_up_proj". DeepSpeed keeps the full shape as
    `ds_shape`; this compares with that. Idempotent; no effect without ZeRO-3.
    """
    from transformers.core_model_loading import Transpose

    original = Transpose.convert
    if getattr(original, "_vlexp_zero3", False):
        return

    @functools.wraps(original)
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        import torch

        param = None
        if self.check_dims and "model" in kwargs and "full_layer_name" in kwargs:
            param = kwargs["model"].get_parameter(kwargs["full_layer_name"])
        full_shape = getattr(param, "ds_shape", None)
        if full_shape is None:
            return original(self, input_dict, source_patterns, target_patterns, **kwargs)
        target = self.get_target_pattern(input_dict, source_patterns, target_patterns)
        tensors = next(iter(input_dict.values()))
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        if tuple(tensor.shape) == tuple(full_shape):
            return {target: tensor}
        with torch.no_grad():
            return {target: torch.transpose(tensor, self.dim0, self.dim1).contiguous()}

    convert._vlexp_zero3 = True
    Transpose.convert = convert


# --- DeepSpeed + kernels: model modules imported before zero.Init, not inside it ------------
def import_model_modules(path: str, trust_remote_code: bool = False) -> list[str]:
    """Import the modeling modules of `path`'s config and its sub-configs before ZeRO-3 loads.

    DeepSpeed 0.19's `zero.Init` wraps `__init__` of every nn.Module subclass, including one
    created inside the context (its `__init_subclass__` hook records `_old_init` before any
    class decorator runs), and on exit puts `_old_init` back. A class decorated by the
    `kernels` package (kernels 0.19 through transformers 5.25's `use_kernelized_func`: Qwen2Attention,
    Qwen3Attention...) replaces `__init__` with one that sets `_kernel_funcs`, which its
    `forward` reads. When the text model's module is first imported inside the context (a
    composite model, InternVL or LLaVA-OneVision, builds its Qwen2/Qwen3 language model from
    the sub-config during `from_pretrained`), the exit restores the undecorated `__init__`,
    and the next model built (TRL's reference model, PPO's critic) fails in forward with
    "'Qwen3Attention' object has no attribute '_kernel_funcs'". Imported beforehand, the
    decorated `__init__` is what DeepSpeed saves and restores. Returns the modules imported.
    """
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    configs = [config, *(getattr(config, name, None) for name in config.sub_configs)]
    modules = []
    for sub in configs:
        try:  # the Auto mapping imports the model's module on lookup
            modules.append(MODEL_MAPPING[type(sub)].__module__)
        except KeyError:
            continue  # a vision sub-config lives in the parent's module, imported with it
    return modules


# --- CPython: the training loop's frames in one data-stack chunk ----------------------------
# Slots of the frame that calls training: 20,000 x 8 bytes makes CPython allocate a 256 KiB
# chunk for it (chunks double from 16 KiB until the frame fits), leaving ~96 KiB for the
# frames below it, several times the deepest training step's.
ROOMY_SLOTS = 20_000


def _call(fn: Callable, kwargs: dict) -> Any:
    return fn(**kwargs)


_ROOMY_CALL = type(_call)(
    _call.__code__.replace(co_stacksize=_call.__code__.co_stacksize + ROOMY_SLOTS),
    _call.__globals__,
)


def in_one_stack_chunk(fn: Callable, **kwargs: Any) -> Any:
    """`fn(**kwargs)` with every frame below it in one CPython data-stack chunk.

    CPython 3.11 keeps Python frames in 16 KiB chunks it maps and unmaps as the call depth
    crosses them (`_PyThreadState_PopFrame` frees a chunk when its first frame returns). Under
    Hydra and vlexp's own layers, the training loop's per-token model calls straddled a chunk
    boundary: 55,000 mmap/munmap pairs in a 60-step GRPO run (plain TRL at its depth: 9,000),
    and each munmap of a threaded process interrupts the core of torch's other OpenMP thread
    (a TLB shootdown). Called from a frame whose declared stack needs a large chunk of its own,
    everything below it fits in that chunk: 17,600 pairs, and the run's training phase 11.7 s
    -> 9.6 s (plain TRL 9.0 s; 3 alternating runs each on 2 cores, 2026-12-07)."""
    return _ROOMY_CALL(fn, kwargs)


# --- Hydra 1.3: the run mode from the composition vlexp's override check made --------------
@contextmanager
def hydra_mode_known(checked: Any) -> Iterator[None]:
    """Hydra's main answers `hydra.mode` from the check's composition instead of its own.

    Hydra 1.3.2's `_run_hydra` composes the whole config once only to read `hydra.mode`
    (`Hydra.get_mode`, which returns `cfg.hydra.mode` or None when composing fails), then again
    to run: with vlexp's override check (`vlexp.overrides.check`) that made three compositions,
    ~0.2 s each. Where the check composed the same overrides, its `hydra.mode` is the answer
    (the mode is a key of the config, not of how it is composed); otherwise Hydra asks itself.
    """
    if not checked.composed:
        yield
        return
    from hydra._internal.hydra import Hydra

    own = Hydra.get_mode
    Hydra.get_mode = lambda self, config_name, overrides: checked.mode
    try:
        yield
    finally:
        Hydra.get_mode = own
