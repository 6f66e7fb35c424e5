"""GLM-4.1V / GLM-4.5V (`glm4v`, `glm4v_moe`): the tiny build and the token counts.

The real `Glm4vForConditionalGeneration` (Qwen2.5-VL-style tower with patch 14, 2x2 merge and
temporal patch 2, learned position embeddings interpolated per image, 3-D RoPE over a GLM-4
language model that rotates half of each head), `Glm4vProcessor` and the chat template of
zai-org/GLM-4.1V-9B-Thinking, at toy size: hidden 64, two text layers, two vision blocks.
GLM's image processor resizes like Qwen's `smart_resize` but over two frames (an image is a
2-frame clip), so `model.max_pixels` bounds twice the image's area: 28x28 px per image token,
the budget counted as 2 x 28 x 28 per token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.families import Family, toy

TEXT = dict(
    toy.TEXT,
    head_dim=16,
    # GLM-4.1V rotates half of each head (partial_rotary_factor 0.5) and splits those
    # rotary pairs over (time, height, width) as 8:12:12 of 32; here 4 pairs.
    rope_parameters={
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [2, 1, 1],
    },
)
VISION = dict(
    toy.QWEN_VISION,
    image_size=56,  # a 4x4 grid of learned positions, interpolated to each image's grid
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)
# The chat template of zai-org/GLM-4.1V-9B-Thinking (revision 3c1471e, sha256 5232dbe7...):
# `[gMASK]<sop>`, role tags without end markers, `<|begin_of_image|><|image|><|end_of_image|>`
# per image, which the processor expands to one `<|image|>` per merged patch. One change:
# system and assistant turns given as text parts (vlexp's records, TRL's conversational
# format) render their text through a `visible_text` macro, as GLM-4.5V's and GLM-4.6V's
# templates do; the original prints the Python list there (`[{'type': 'text', ...}]`).
CHAT_TEMPLATE = """[gMASK]<sop>
{%- macro visible_text(content) -%}
    {%- if content is string -%}
        {{- content }}
    {%- else -%}
        {%- for item in content -%}
            {%- if item.type == 'text' -%}
                {{- item.text }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- for msg in messages %}
    {%- if msg.role == 'system' %}
<|system|>
{{ visible_text(msg.content) }}
    {%- elif msg.role == 'user' %}
<|user|>{{ '\\n' }}

        {%- if msg.content is string %}
{{ msg.content }}
        {%- else %}
            {%- for item in msg.content %}
                {%- if item.type == 'video' or 'video' in item %}
<|begin_of_video|><|video|><|end_of_video|>
                {%- elif item.type == 'image' or 'image' in item %}
<|begin_of_image|><|image|><|end_of_image|>
                {%- elif item.type == 'text' %}
{{ item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
    {%- elif msg.role == 'assistant' %}
        {%- if msg.metadata %}
<|assistant|>{{ msg.metadata }}
{{ visible_text(msg.content) }}
        {%- else %}
<|assistant|>
{{ visible_text(msg.content) }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{% if add_generation_prompt %}<|assistant|>
{% endif %}"""


def glm_tokenizer(tokenizer: Any) -> Any:
    """`tokenizer` (vlexp's tiny BPE, the family's tokens added) with GLM's end and padding
    token `<|endoftext|>` (the real tokenizer_config.json's)."""
    return type(tokenizer)(
        tokenizer_object=tokenizer.backend_tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=tokenizer.model_max_length,
    )


def tiny_glm4v(tokenizer: Any, seed: int) -> tuple[Any, Any]:
    """(processor, model) of the tiny GLM-4.1V for `tokenizer`, weights seeded by `seed`."""
    from transformers import Glm4vImageProcessor, Glm4vProcessor, Glm4vVideoProcessor

    tokenizer = glm_tokenizer(tokenizer)
    # Pixel limits here are only defaults: model.min_pixels / model.max_pixels override them.
    size = {"shortest_edge": 2 * 56 * 56, "longest_edge": 2 * 28 * 28 * 16}
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Glm4vVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )
    return processor, _model(tokenizer, seed)


def _model(tokenizer: Any, seed: int) -> Any:
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _IDS_OF.values()}
    named = {key: ids[token] for key, token in _IDS_OF.items() if key.endswith("_id")}
    end, user, observation = (ids[t] for t in ("<|endoftext|>", "<|user|>", "<|observation|>"))
    config = Glm4vConfig(
        text_config=dict(TEXT, vocab_size=len(tokenizer), pad_token_id=end, eos_token_id=end),
        vision_config=VISION,
        **named,
    )
    # GLM-4.1V's generation_config.json: a turn ends at <|endoftext|>, <|user|> or
    # <|observation|> (its template writes no end-of-turn token).
    stops = dict(eos_token_id=[end, user, observation], pad_token_id=end)
    return toy.seeded_model(Glm4vForConditionalGeneration, config, seed, **stops)


_IDS_OF = {
    "image_token_id": "<|image|>",
    "video_token_id": "<|video|>",
    "image_start_token_id": "<|begin_of_image|>",
    "image_end_token_id": "<|end_of_image|>",
    "video_start_token_id": "<|begin_of_video|>",
    "video_end_token_id": "<|end_of_video|>",
    "end": "<|endoftext|>",
    "user": "<|user|>",
    "observation": "<|observation|>",
}


def _resize(family: Family, low: int, high: int) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)` as `Glm4vImageProcessor.resize`: GLM's own
    `smart_resize` of an image taken as `temporal_patch_size` frames."""
    from transformers.models.glm4v.image_processing_glm4v import smart_resize

    frames, factor = family.temporal_patch_size, family.pixels_per_token

    def resized(width: int, height: int) -> tuple[int, int]:
        h, w = smart_resize(frames, height, width, frames, factor, low, high)
        return w, h

    return resized


def resize(family: Family, processor: Any) -> Callable[[int, int], tuple[int, int]]:
    """`(width, height) -> (width, height)` the tower sees, at the processor's pixel budget."""
    from vlexp.families.qwen2_vl import pixel_limits

    return _resize(family, *pixel_limits(processor))


def image_tokens(family: Family, processor: Any) -> Callable[..., int]:
    """`(width, height, images_in_prompt=1) -> tokens`: one `<|image|>` per merged patch of
    the resized image (Glm4vProcessor.replace_image_token); the begin/end markers are the
    template's own."""
    sized = resize(family, processor)
    factor = family.pixels_per_token

    def count(width: int, height: int, images_in_prompt: int = 1) -> int:
        w, h = sized(width, height)
        return (w // factor) * (h // factor)

    return count


def config_image_tokens(model_cfg: Any, config: Any, width: int, height: int) -> int:
    """The planner's image tokens: the same count at `model.min_pixels` / `max_pixels`."""
    from vlexp.families import of_model_type

    family = of_model_type(config.model_type)
    w, h = _resize(family, model_cfg.min_pixels, model_cfg.max_pixels)(width, height)
    return (w // family.pixels_per_token) * (h // family.pixels_per_token)
