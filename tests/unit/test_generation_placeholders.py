"""Generation keeps the vision placeholder tokens out (recipe.run.keep_placeholders_out)."""

from __future__ import annotations

import pytest

from vlexp import families
from vlexp.recipe.run import keep_placeholders_out


def _config(model_type: str):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type)


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("qwen2_5_vl", [151652, 151653, 151655, 151656]),  # vision start/end, image, video pad
        ("qwen3_vl", [151652, 151653, 151655, 151656]),
        ("gemma3", [255999, 256000, 262144]),  # start/end of image, image soft token
        ("llava", [32000]),
        ("llava_onevision", [151646, 151647]),  # <image>, <video> (the llava-hf checkpoints')
    ],
)
def test_placeholders_are_the_configs_non_text_special_tokens(model_type, expected):
    config = _config(model_type)
    assert families.placeholder_token_ids(config) == expected
    assert getattr(config.get_text_config(), "eos_token_id", None) not in expected


def test_suppress_tokens_keep_the_users_own_entries():
    from trl import GRPOConfig

    args = GRPOConfig(output_dir="/tmp/x", use_cpu=True, generation_kwargs={"suppress_tokens": [7]})
    keep_placeholders_out(args, _config("qwen2_5_vl"))
    assert args.generation_kwargs["suppress_tokens"] == [7, 151652, 151653, 151655, 151656]


def test_vllm_generation_is_left_alone():
    from trl import GRPOConfig

    args = GRPOConfig(output_dir="/tmp/x", use_cpu=True, use_vllm=True)
    keep_placeholders_out(args, _config("qwen2_5_vl"))
    assert not args.generation_kwargs  # SamplingParams has no suppress_tokens
