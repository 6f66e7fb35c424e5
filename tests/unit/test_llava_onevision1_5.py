"""LLaVA-OneVision-1.5 (issue 30) against references vlexp did not write: the prompt its
checkpoint's processor writes (transformers' integration test) and the weight layout its
released checkpoints keep (the LLaVA-OneVision-1.5 repository's own conversion tables).
"""

from __future__ import annotations

from vlexp.families import FAMILIES

FAMILY = FAMILIES["llava_onevision1_5"]

# transformers' tests/models/llava_onevision1_5/test_modeling_llava_onevision1_5.py,
# `expected_input_ids` of a one-image "What kind of dog is this?" prompt to the 1.5-4B-Instruct
# checkpoint (its first 17 ids, Qwen2 vocabulary), written out as the tokens they are:
# [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198, 151652,
#  151655, 151655].
EXPECTED_PROMPT_START = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|>"
)


def test_the_prompt_starts_as_the_checkpoints_processor_writes_it():
    """Default system turn, then the image as `<|vision_start|>` + one `<|image_pad|>` per
    28x28 px: what transformers' integration test expects of the real processor."""
    from PIL import Image
    from transformers import AutoProcessor

    from vlexp.models import tiny

    processor = AutoProcessor.from_pretrained(tiny.ensure(FAMILY.name))
    content = [{"type": "image"}, {"type": "text", "text": "What kind of dog is this?"}]
    messages = [{"role": "user", "content": content}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = processor(text=[text], images=[Image.new("RGB", (64, 64))])["input_ids"][0]
    decoded = processor.tokenizer.decode(ids, skip_special_tokens=False)
    assert decoded.startswith(EXPECTED_PROMPT_START), decoded


# The released checkpoints' names (EvolvingLMMs-Lab/LLaVA-OneVision-1.5,
# tools/convert_checkpoint/config/llava-ov-1.5-8b/: qwen3.json `model.embed_tokens`,
# `model.layers`, `model.norm`, `lm_head`; vision-patch.json `visual.class_embedding`,
# `visual.class_pos_emb`, `visual.patch_embed.proj`, `visual.pre_layernorm`; adapter.json
# `visual.merger.ln_q`, `visual.merger.mlp.0`, `visual.merger.mlp.2`; vision-model.json
# `visual.blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`).
RELEASED = ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight")
RELEASED += ("visual.class_embedding", "visual.class_pos_emb", "visual.patch_embed.proj.weight")
RELEASED += ("visual.pre_layernorm.weight", "visual.merger.ln_q.weight")
RELEASED += ("visual.merger.mlp.0.weight", "visual.merger.mlp.2.weight")
RELEASED += ("visual.blocks.0.attn.qkv.weight", "visual.blocks.0.mlp.fc1.weight")


def _released_layout(state: dict) -> dict:
    """The tiny build's weights under the released names. transformers 5.25 saves the vision
    tower under them already and the language model as `model.model.*` (its two renamings
    reversed in turn); the released files say `model.*`."""
    prefixes = ("model.model.", "model.language_model.")
    return {
        ("model." + name.split(".", 2)[2] if name.startswith(prefixes) else name): tensor
        for name, tensor in state.items()
    }


def test_the_value_head_loads_a_checkpoint_in_the_released_layout(tmp_path):
    """A reward model / PPO critic started from a released checkpoint gets its weights (not a
    random backbone): the family's value-head class reads the original key names, as
    transformers' own class for the model does."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForImageTextToText

    from vlexp.algorithms.reward_model import value_head_class
    from vlexp.models import tiny

    source = tiny.ensure(FAMILY.name)
    released = _released_layout(load_file(str(source / "model.safetensors")))
    assert set(RELEASED) <= set(released), sorted(set(RELEASED) - set(released))
    for name in ("config.json", "generation_config.json"):
        (tmp_path / name).write_text((source / name).read_text())
    save_file(released, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})

    expected = AutoModelForImageTextToText.from_pretrained(source).model.state_dict()
    loaded = value_head_class(FAMILY).from_pretrained(tmp_path).model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)
