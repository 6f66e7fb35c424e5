"""Load the processor and the model the way a real checkpoint is loaded: `from_pretrained`."""

from __future__ import annotations

from typing import Any

TINY_SCHEME = "tiny://"


def resolve_path(name_or_path: str) -> str:
    """A hub id or local dir as given; `tiny://NAME` becomes the cached tiny build."""
    if name_or_path.startswith(TINY_SCHEME):
        from vlexp import tiny

        return str(tiny.ensure(name_or_path[len(TINY_SCHEME) :]))
    return name_or_path


def load_processor(model_cfg: Any):
    """The model's own processor with the configured pixel budget (one image path for all)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        resolve_path(model_cfg.name_or_path),
        trust_remote_code=model_cfg.get("trust_remote_code", False),
    )
    # transformers 5 spells the pixel budget as the image processor's size; saved with the
    # processor into final/, so evaluation and inference see the same pixels as training.
    processor.image_processor.size = {
        "shortest_edge": model_cfg.min_pixels,
        "longest_edge": model_cfg.max_pixels,
    }
    # Batched generation needs left padding; TRL pads prompts itself but evaluation does not.
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(model_cfg: Any, memory_cfg: Any):
    """Instantiate the model from its path with dtype, attention and quantization settings."""
    import torch
    from hydra.utils import instantiate
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, model_cfg.dtype),
        "attn_implementation": model_cfg.attn_implementation,
        "trust_remote_code": model_cfg.get("trust_remote_code", False),
    }
    if memory_cfg.get("quantization") is not None:
        kwargs["quantization_config"] = instantiate(memory_cfg.quantization)
    model = AutoModelForImageTextToText.from_pretrained(
        resolve_path(model_cfg.name_or_path), **kwargs
    )
    if model_cfg.get("freeze_vision"):
        freeze_vision(model)
    return model


def freeze_vision(model) -> int:
    """Stop gradients through the vision tower and merger; returns the frozen parameter count."""
    frozen = 0
    for name, param in model.named_parameters():
        if ".visual." in f".{name}" or name.startswith("visual."):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen
