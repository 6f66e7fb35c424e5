"""Load the processor and the model the way a real checkpoint is loaded: `from_pretrained`."""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vlexp import families
from vlexp.config import memory
from vlexp.models import tiny

TINY_SCHEME = "tiny://"


def resolve_path(name_or_path: str) -> str:
    """A hub id or local dir as given; `tiny://NAME` becomes the cached tiny build."""
    if name_or_path.startswith(TINY_SCHEME):
        return str(tiny.ensure(name_or_path[len(TINY_SCHEME) :]))
    return name_or_path


HUB_PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def is_hub_id(name_or_path: str) -> bool:
    """`org/name` that is not a local folder (or the tiny:// scheme)."""
    if name_or_path.startswith(TINY_SCHEME) or Path(name_or_path).expanduser().exists():
        return False
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) is not None


def hub_cached(repo_id: str) -> bool:
    """Whether the hub cache holds a snapshot of `repo_id` with its config.json (the cache
    layout huggingface_hub documents; read without importing it)."""
    home = os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")
    cache = Path(os.environ.get("HF_HUB_CACHE", Path(home) / "hub")).expanduser()
    folder = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return any(folder.glob("*/config.json"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE


@functools.cache
def hub_reachable() -> bool:
    """A TCP connection to the hub (HF_ENDPOINT) within a few seconds; behind a proxy
    (HTTPS_PROXY) the answer is left to the download itself."""
    if any(os.environ.get(key) for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
        return True
    except OSError:
        return False


def source_problem(name_or_path: str) -> str | None:
    """Why `model.name_or_path` cannot load on this machine, found in seconds (the hub client
    would retry for minutes); None when it can."""
    if name_or_path.startswith(TINY_SCHEME) or Path(name_or_path).expanduser().exists():
        return None
    if not is_hub_id(name_or_path):
        return (
            f"model.name_or_path={name_or_path}: no such directory, and not a hub id "
            "(org/name such as Qwen/Qwen2.5-VL-3B-Instruct)"
        )
    if hub_cached(name_or_path) or (not hub_offline() and hub_reachable()):
        return None
    why = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return (
        f"model.name_or_path={name_or_path}: not in the local cache and the hub is "
        f"unreachable{why}: download it with `hf download {name_or_path}` or set "
        "`model.name_or_path` to a local directory"
    )


def work_offline_if_unreachable(name_or_path: str) -> bool:
    """A cached hub model with the hub unreachable: set HF_HUB_OFFLINE=1 (this process and
    the ranks it launches) so loading reads the cache at once instead of retrying the hub.
    Call before huggingface_hub is imported; returns whether it did."""
    if not is_hub_id(name_or_path) or hub_offline() or hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    return True


def load_processor(model_cfg: Any, family: families.Family):
    """The model's own processor with the configured pixel budget (one image path for all);
    `family`: the model's, resolved once at start-up (`vlexp.runplan`)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        resolve_path(model_cfg.name_or_path),
        trust_remote_code=model_cfg.get("trust_remote_code", False),
    )
    # transformers 5 spells the pixel budget as the image processor's size; saved with the
    # processor into final/, so evaluation and inference see the same pixels as training.
    # Families with a fixed image size (Gemma 3) keep the processor's own.
    if family.processor_text_kwargs is not None:
        processor.text_kwargs = dict(family.processor_text_kwargs)
    if family.pixel_budget:
        processor.image_processor.size = {
            "shortest_edge": model_cfg.min_pixels,
            "longest_edge": model_cfg.max_pixels,
        }
    # Batched generation needs left padding; TRL pads prompts itself but evaluation does not.
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(model_cfg: Any, memory_cfg: Any, compose_class: Any = None):
    """Instantiate the model from its path with dtype, attention and quantization settings.

    `compose_class(model_class) -> class` builds the class the model is loaded as (the policy
    of a run that generates: vlexp.rollout.policy_class), from the class transformers' Auto
    mapping picks for the checkpoint's config."""
    import torch
    from hydra.utils import instantiate

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, model_cfg.dtype),
        "attn_implementation": model_cfg.attn_implementation,
        "trust_remote_code": model_cfg.get("trust_remote_code", False),
    }
    quantization = memory.of({"memory": memory_cfg}).quantization
    if quantization is not None:
        kwargs["quantization_config"] = instantiate(quantization)
    if memory.of({"memory": memory_cfg}).zero_stage == 3:  # TRL loads the reference later
        from vlexp import patches

        patches.zero3_aware_expert_transpose()
        patches.import_model_modules(
            resolve_path(model_cfg.name_or_path), kwargs["trust_remote_code"]
        )
    path = resolve_path(model_cfg.name_or_path)
    model = model_class(path, kwargs["trust_remote_code"], compose_class).from_pretrained(
        path, **kwargs
    )
    if model_cfg.get("freeze_vision"):
        freeze_vision(model)
    return model


def model_class(path: str, trust_remote_code: bool, compose_class: Any = None) -> Any:
    """AutoModelForImageTextToText, or `compose_class` of the class it would load for `path`'s
    config (transformers' public Auto mapping). A config the mapping does not hold (remote
    code) loads through the Auto class, uncomposed, with a warning."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    if compose_class is None:
        return AutoModelForImageTextToText
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    try:
        return compose_class(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)])
    except KeyError:
        logging.getLogger("vlexp").warning(
            "%s: %s is not in transformers' image-text-to-text mapping (remote code?): its "
            "generate runs without vlexp's rollout engine and timing_s/generate",
            path,
            type(config).__name__,
        )
        return AutoModelForImageTextToText


def peft_config(held: memory.Memory, model_type: str | None):
    """`memory.peft` built (`held`: the run plan's memory part), its adapters kept off the
    family's vision tower.

    With `exclude_modules: null` (the memory=lora default) the family's `vision_modules`
    regex is excluded, so adapters go only where `target_modules` names layers of the
    language model (the vision blocks have q/k/v and MLP projections of the same names).
    """
    from hydra.utils import instantiate

    node = held.peft
    if node is None:
        return None
    config = instantiate(node)
    if getattr(config, "exclude_modules", None) is None and model_type is not None:
        config.exclude_modules = families.of_model_type(model_type).vision_modules
    return config


def freeze_vision(model) -> int:
    """Stop gradients through the vision tower and merger; returns the frozen parameter count."""
    pattern = re.compile(families.of_model(model).vision_modules)
    frozen = 0
    for name, module in model.named_modules():
        if name and pattern.fullmatch(name):
            for param in module.parameters(recurse=False):
                param.requires_grad_(False)
                frozen += param.numel()
    # Children of a matched module match too (the regex allows any suffix), so every
    # parameter of the tower is visited once, through the module that owns it.
    return frozen
