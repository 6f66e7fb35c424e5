"""lmms-eval's Qwen-VL chat backend on a model vlexp has already loaded.

lmms-eval's `qwen2_5_vl` backend loads `pretrained=DIR` itself: full weights only, bfloat16,
its own default pixel limits. vlexp hands it the model it loaded the way training and
`vlexp.evaluate` do (full weights, or the base model plus the run's LoRA adapter) and the
run's own processor, whose min/max pixels are the run's. Everything else is lmms-eval's own
code: its prompts (each task's doc_to_messages / doc_to_text), qwen-vl-utils' vision
preprocessing, batching, decoding and the task's scoring.
"""

from __future__ import annotations

from typing import Any


def backend(model: Any, processor: Any, model_cfg: Any, batch_size: int = 1) -> Any:
    """An lmms-eval `lmms` model (lmms-eval's Qwen2_5_VL chat class) around `model`."""
    from lmms_eval.api.model import lmms
    from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL

    class LoadedQwenVL(Qwen2_5_VL):
        """Qwen2_5_VL without its __init__ (which would load `pretrained` from disk): the
        attributes its generate_until reads, set from what vlexp loaded."""

        def __init__(self) -> None:
            lmms.__init__(self)  # rank 0 of 1, the cache hook, task_dict
            self._model = model
            self.processor = processor
            self._tokenizer = getattr(processor, "tokenizer", processor)
            self._config = model.config
            # The run's pixel limits: the processor already applies them to images; the
            # backend passes these to qwen-vl-utils for videos.
            image_processor = getattr(processor, "image_processor", None)
            self.min_pixels = model_cfg.get("min_pixels") or getattr(
                image_processor, "min_pixels", 256 * 28 * 28
            )
            self.max_pixels = model_cfg.get("max_pixels") or getattr(
                image_processor, "max_pixels", 1605632
            )
            self.max_num_frames = 32
            self.fps = None
            self.system_prompt = None
            self.reasoning_prompt = None
            self.interleave_visuals = False
            self._max_length = 2048
            self.batch_size_per_gpu = int(batch_size)
            self.use_cache = True
            self._device = model.device
            # Not "auto": the backend would then move every input to "cuda".
            self.device_map = str(model.device)

    return LoadedQwenVL()
