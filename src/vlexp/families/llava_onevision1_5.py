"""LLaVA-OneVision-1.5 (`llava_onevision1_5`): the tiny build.

The real `LlavaOnevision15ForConditionalGeneration` (RICE-ViT tower: 14-px patches embedded by a
2-D convolution, a CLS token per image, 2-D rotary positions, a 2x2 patch merger out to the
LLM width; a Qwen3 language model with plain 1-D positions), `Exaone4_5_Processor` (the
processor transformers maps `llava_onevision1_5` to) with `Qwen2VLImageProcessor` and
`Qwen2VLVideoProcessor`, at toy size: hidden 64, two text layers, two vision blocks.

Native resolution as Qwen2-VL: `smart_resize` to multiples of 28 px within the pixel budget, one
`<|image_pad|>` per 28x28 px (Exaone4_5_Processor.replace_image_token: `image_grid_thw.prod()
// merge_size**2`), so the family counts images and videos with vlexp.families.qwen2_vl's
functions. Unlike Qwen2-VL the temporal patch is 1 frame (the tower's patch embedding is 2-D:
a 2-frame patch row would be read as two patches), as transformers' own LLaVA-OneVision-1.5
image and video processors set it (`temporal_patch_size = 1`); the tiny build's processors say
so, as the checkpoint's preprocessor configs must.

The chat template is Qwen2.5-VL's as TRL ships it (`<|vision_start|><|image_pad|><|vision_end|>`
per image, "You are a helpful assistant." when a conversation has no system turn): transformers'
integration test of the 1.5-4B-Instruct checkpoint expects exactly these input ids for a
one-image prompt (tests/models/llava_onevision1_5/test_modeling_llava_onevision1_5.py,
`expected_input_ids`: system turn, then `<|im_start|>user\\n<|vision_start|><|image_pad|>`).
"""

from __future__ import annotations

from typing import Any

from vlexp.families import toy

PATCH = 14
MERGE = 2
TEXT = dict(toy.TEXT, model_type="qwen3", head_dim=16)
# The RICE-ViT's 2-D rotary embedding splits each head over (height, width): hidden_size must
# be a multiple of 4 x heads (64 = 4 x 4 x 4); the merger's output is the text width (64).
VISION = dict(
    toy.QWEN_VISION,
    patch_size=PATCH,
    spatial_merge_size=MERGE,
    layer_norm_eps=1e-5,
)


def tiny_llava_onevision1_5(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny LLaVA-OneVision-1.5 for `tokenizer`, weights seeded."""
    return _processor(tokenizer), _model(tokenizer, seed)


def _processor(tokenizer: Any) -> Any:
    from transformers import Exaone4_5_Processor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from vlexp.families.qwen2_vl import chat_template

    # Pixel limits here are only defaults: model.min_pixels / model.max_pixels override them.
    pixels = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 16}
    geometry = dict(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=1)
    return Exaone4_5_Processor(
        image_processor=Qwen2VLImageProcessor(**geometry, **pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**geometry),
        chat_template=chat_template(),
    )


def _model(tokenizer: Any, seed: int) -> Any:
    from transformers import LlavaOnevision15Config, LlavaOnevision15ForConditionalGeneration

    config = LlavaOnevision15Config(
        text_config=toy.chatml_text_config(tokenizer, TEXT),
        vision_config=VISION,
        **toy.vision_token_ids(tokenizer),
        tie_word_embeddings=False,  # the released checkpoints keep their own lm_head
    )
    return toy.seeded_model(
        LlavaOnevision15ForConditionalGeneration, config, seed, **toy.chatml_stops(tokenizer)
    )
