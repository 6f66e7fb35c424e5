"""The tiny Qwen2.5-VL: deterministic build, the real chat template, the real processor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vlexp.families import FAMILIES
from vlexp.models import tiny


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def short_warmup():
    saved = dict(tiny.WARMUP)
    tiny.WARMUP.update(steps=3)
    yield
    tiny.WARMUP.clear()
    tiny.WARMUP.update(saved)


def test_build_is_deterministic(tmp_path, shapes_dir, short_warmup):
    first = tiny.build(tmp_path / "a", seed=0)
    second = tiny.build(tmp_path / "b", seed=0)
    other = tiny.build(tmp_path / "c", seed=1)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _digest(first / name) == _digest(second / name), name
    assert _digest(first / "model.safetensors") != _digest(other / "model.safetensors")
    # The warm-up really trained: its loss went down.
    losses = json.loads((first / "vlexp_tiny.json").read_text())["losses"]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_architecture_is_qwen2_5_vl_at_toy_size(tiny_model):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model)
    assert config.model_type == "qwen2_5_vl"
    assert config.text_config.hidden_size == 64 and config.text_config.num_hidden_layers == 2
    vision = config.vision_config
    assert (vision.depth, vision.patch_size, vision.spatial_merge_size) == (2, 14, 2)
    assert vision.temporal_patch_size == 2


def test_chat_template_renders_the_qwen2_5_vl_format(tiny_model):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "How many red shapes?"}],
        }
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many red shapes?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_special_tokens_match_the_model_config(tiny_model):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = AutoConfig.from_pretrained(tiny_model)
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") == config.image_token_id
    assert tokenizer.convert_tokens_to_ids("<|vision_start|>") == config.vision_start_token_id
    # Each special token is one id, never split by the BPE.
    for token in FAMILIES["qwen2_5_vl"].special_tokens:
        assert tokenizer.tokenize(token) == [token]


def test_processor_image_tokens_follow_smart_resize(tiny_model):
    """model.min_pixels / model.max_pixels reach the processor: tokens = smart_resize area / 28²."""
    from omegaconf import OmegaConf
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from vlexp.models.loading import load_processor

    model_cfg = OmegaConf.create(
        {"name_or_path": "tiny://qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}
    )
    processor = load_processor(model_cfg, FAMILIES["qwen2_5_vl"])
    for width, height in ((56, 56), (224, 168), (30, 200)):
        image = Image.new("RGB", (width, height), (255, 0, 0))
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]}],
            tokenize=False,
        )
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        h, w = smart_resize(height, width, factor=28, min_pixels=3136, max_pixels=12544)
        expected = (h // 28) * (w // 28)
        pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
        assert int((inputs["input_ids"] == pad).sum()) == expected
        assert inputs["image_grid_thw"].tolist() == [[1, h // 14, w // 14]]


def test_tiny_scheme_resolves_to_the_cache(tiny_model, vlexp_cache):
    from vlexp.models.loading import resolve_path

    assert resolve_path("tiny://qwen2_5_vl") == str(tiny_model)
    assert str(tiny_model).startswith(str(vlexp_cache))
    with pytest.raises(ValueError, match="tiny://qwen2_5_vl"):
        resolve_path("tiny://llama")
