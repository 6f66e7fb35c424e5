"""What every family's tiny build shares: the toy sizes and the seeded model with its sampling
generation config.

Each family module (`qwen2_vl.py`, `gemma3.py`, `internvl.py`, ...) says what differs (its
classes, rope, vision geometry, tokens); the sizes and the last steps are here, so a tiny build
is the family's config plus `seeded_model`. The weights depend only on the model class, the
config and the seed: `torch.manual_seed(seed)` right before the constructor, as before this
module existed, so every cached tiny build (vlexp.models.tiny) keeps its bytes.
"""

from __future__ import annotations

from typing import Any

# Text model at toy size: hidden 64 in 4 heads (head_dim 16), 2 layers, 2 key/value heads.
# Families whose config has a `head_dim` field add `head_dim=16` (Qwen2's computes it).
TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)
# Vision towers at toy size, in the two spellings transformers' configs use: Qwen-style
# (`depth`, `num_heads`, a merger out to the LLM width) and ViT/SigLIP-style.
QWEN_VISION = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64)
VIT_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
# ChatML's text tokens (Qwen tokenizers): `<|endoftext|>` pads and begins, `<|im_end|>` ends a turn.
CHATML_END, CHATML_TURN_END = "<|endoftext|>", "<|im_end|>"


def chatml_text_config(tokenizer: Any, text: dict) -> dict:
    """`text` with the tokenizer's vocabulary size and ChatML's bos/eos/pad ids."""
    end, turn_end = tokenizer.convert_tokens_to_ids([CHATML_END, CHATML_TURN_END])
    return dict(
        text, vocab_size=len(tokenizer), bos_token_id=end, eos_token_id=turn_end, pad_token_id=end
    )


def chatml_stops(tokenizer: Any) -> dict[str, Any]:
    """Generation stops of a ChatML model: the end of a turn or of the text; pads with the end."""
    end, turn_end = tokenizer.convert_tokens_to_ids([CHATML_END, CHATML_TURN_END])
    return dict(eos_token_id=[turn_end, end], pad_token_id=end)


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The model config's ids of the Qwen-style vision tokens (image and video pads, vision
    start and end), as `tokenizer` numbers them: the tiny builds of every family whose
    processor writes them."""
    tokens = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    return {key: tokenizer.convert_tokens_to_ids(token) for key, token in tokens.items()}


def named_tokenizer(tokenizer: Any, named: dict[str, str]) -> Any:
    """`tokenizer` (vlexp's tiny BPE, the family's tokens already added) with the `named` tokens
    a processor reads as tokenizer attributes (`tokenizer.image_token`, ...), declared as the
    real checkpoint's tokenizer_config.json declares them (`extra_special_tokens`), so they
    survive save/load."""
    return type(tokenizer)(
        tokenizer_object=tokenizer.backend_tokenizer,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
        unk_token=None,
        bos_token=None,
        extra_special_tokens=named,
        clean_up_tokenization_spaces=False,
        model_max_length=tokenizer.model_max_length,
    )


def seeded_model(model_class: Any, config: Any, seed: int, **stops: Any) -> Any:
    """`model_class(config)` with random weights drawn from `seed`, generating by sampling at
    temperature 1 (what GRPO's rollouts and the warm-up expect) and stopping at `stops`
    (`eos_token_id`, `pad_token_id`, optionally `bos_token_id`: GenerationConfig's keys)."""
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config = GenerationConfig(**stops, do_sample=True, temperature=1.0)
    return model
