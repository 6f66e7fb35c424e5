"""lmms-eval's Qwen-VL chat backends on a model vlexp has already loaded.

lmms-eval's `qwen2_5_vl` / `qwen3_vl` backends load `pretrained=DIR` itself: full weights only, bfloat16,
its own default pixel limits. vlexp hands it the model it loaded the way training and
`vlexp.evaluate` do (full weights, or the base model plus the run's LoRA adapter) and the
run's own processor, whose min/max pixels are the run's. Everything else is lmms-eval's own
code: its prompts (each task's doc_to_messages / doc_to_text), qwen-vl-utils' vision
preprocessing, batching, decoding and the task's scoring.
"""

from __future__ import annotations

from typing import Any

# config.model_type -> lmms-eval's chat backend for it (module, class). lmms-eval's Qwen3_VL
# class serves Qwen3-VL, its MoE and Qwen3.5 (16-px patches for qwen-vl-utils' resizing).
BACKENDS = {
    "qwen2_vl": ("lmms_eval.models.chat.qwen2_5_vl", "Qwen2_5_VL"),
    "qwen2_5_vl": ("lmms_eval.models.chat.qwen2_5_vl", "Qwen2_5_VL"),
    "qwen3_vl": ("lmms_eval.models.chat.qwen3_vl", "Qwen3_VL"),
    "qwen3_vl_moe": ("lmms_eval.models.chat.qwen3_vl", "Qwen3_VL"),
    "qwen3_5": ("lmms_eval.models.chat.qwen3_vl", "Qwen3_VL"),
    "qwen3_5_moe": ("lmms_eval.models.chat.qwen3_vl", "Qwen3_VL"),
}


def problem(model_type: str) -> str | None:
    """Why bench= cannot evaluate a model of this type (None: it can)."""
    if model_type in BACKENDS:
        return None
    return (
        f"bench=: no lmms-eval backend wired for model_type {model_type!r} (wired: "
        f"{', '.join(BACKENDS)}); add its lmms-eval chat class to BACKENDS in "
        "vlexp/evaluation/bench_backend.py"
    )


def backend(model: Any, processor: Any, model_cfg: Any, batch_size: int = 1) -> Any:
    """An lmms-eval `lmms` model (lmms-eval's chat class for the model type) around `model`."""
    import importlib

    from lmms_eval.api.model import lmms

    module, name = BACKENDS[model.config.model_type]
    chat_class = getattr(importlib.import_module(module), name)
    image_processor = getattr(processor, "image_processor", None)

    class LoadedQwenVL(chat_class):
        """The chat class without its __init__ (which would load `pretrained` from disk):
        the attributes its generate_until reads, set from what vlexp loaded."""

        def __init__(self) -> None:
            lmms.__init__(self)  # rank 0 of 1, the cache hook, task_dict
            self._model = model
            self.processor = processor
            self._tokenizer = getattr(processor, "tokenizer", processor)
            self._config = model.config
            # The run's pixel limits: the processor already applies them to images; the
            # backend passes these to qwen-vl-utils (videos, and images before the processor).
            self.min_pixels = model_cfg.get("min_pixels") or getattr(
                image_processor, "min_pixels", 256 * 28 * 28
            )
            self.max_pixels = model_cfg.get("max_pixels") or getattr(
                image_processor, "max_pixels", 1605632
            )
            self.total_pixels = None  # Qwen3_VL: no cap on a video's total pixels
            self.max_num_frames = 32
            self.fps = None
            self.system_prompt = (
                "You are a helpful assistant."  # lmms-eval's default (both classes)
            )
            self.reasoning_prompt = None
            self.enable_thinking = None  # Qwen3_VL: the chat template's default
            self.interleave_visuals = False
            self._max_length = 2048
            self.batch_size_per_gpu = int(batch_size)
            self.use_cache = True
            self._device = model.device
            # Not "auto": the backend would then move every input to "cuda".
            self.device_map = str(model.device)

    return LoadedQwenVL()
