"""The families of issue 30 (InternVL3.5, GLM-4.xV, MiniCPM-V, LLaVA-OneVision-1.5) against
their own references: the box format each model card documents, the modules transformers builds
the vision path from, the placeholder token the processor expands, and videos where vlexp
cannot count them.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import compose, run_cli
from vlexp import runplan

# The right box for a 224x168 image with the object at pixels [56, 42, 112, 84], written as
# each family's documentation writes boxes.
BOX_ANSWERS = {
    # InternVL's grounding data (InternVL-doc, get_started/chat_data_format.md, RefCOCO example):
    # `<ref>name</ref><box>[[x1, y1, x2, y2]]</box>`, 0..1000 of the image.
    "tiny_internvl": "<ref>the square</ref><box>[[250, 250, 500, 500]]</box>",
    # GLM-4.1V/4.5V answer between its box tokens, 0..1000 of the image (GLM-V's README).
    "tiny_glm4v": "<|begin_of_box|>[250, 250, 500, 500]<|end_of_box|>",
}
# (tiny preset, the model's vision modules: the attributes transformers' backbone feeds images
# through before the language model).
VISION = {
    "tiny_internvl": ("vision_tower", "multi_modal_projector"),
    "tiny_glm4v": ("visual",),  # the tower holds its merger and downsampling
    "tiny_minicpmv": ("vision_tower", "merger"),  # the window merger is inside the tower
    "tiny_llava_onevision1_5": ("visual",),  # the RICE tower holds its merger
}


@pytest.mark.parametrize("preset", list(BOX_ANSWERS))
def test_a_box_written_as_the_model_card_writes_it_scores_one(preset):
    from PIL import Image

    image, box = Image.new("RGB", (224, 168)), [56, 42, 112, 84]
    iou = runplan.of(compose([f"model={preset}", "reward=[iou]"])).reward_functions()["iou"]
    completion = f"<think>there</think><answer>{BOX_ANSWERS[preset]}</answer>"
    assert iou([completion], box=[json.dumps(box)], images=[[image]]) == [1.0]
    # The same numbers read as pixels would miss: the frame is the family's, not a guess.
    pixels = "<answer>[250, 250, 500, 500]</answer>"
    tiny = runplan.of(compose(["model=tiny_gemma3", "reward=[iou]"])).reward_functions()["iou"]
    assert tiny([pixels], box=[json.dumps(box)], images=[[image]]) == [0.0]


def _tiny_model(preset: str):
    from transformers import AutoModelForImageTextToText

    from vlexp.models import tiny

    family = compose([f"model={preset}"]).model.name_or_path.removeprefix("tiny://")
    return family, AutoModelForImageTextToText.from_pretrained(tiny.ensure(family))


@pytest.mark.parametrize("preset", list(VISION))
def test_vision_modules_are_the_towers_transformers_builds(preset):
    """`freeze_vision` / LoRA's exclusion regex matches exactly the parameters of the modules
    the model's own backbone runs images through, and nothing of the language model."""
    import re

    from vlexp import families

    name, model = _tiny_model(preset)
    pattern = re.compile(families.FAMILIES[name].vision_modules)
    matched = {n for n, _ in model.named_parameters() if pattern.fullmatch(n.rsplit(".", 1)[0])}
    backbone = model.model
    expected = {
        f"model.{attr}.{n}"
        for attr in VISION[preset]
        for n, _ in getattr(backbone, attr).named_parameters()
    }
    assert matched == expected and expected


@pytest.mark.parametrize("preset", list(VISION))
def test_the_processors_image_token_is_kept_out_of_generation(preset):
    """The token the processor expands per image is among those generation suppresses
    (a sampled one crashes the next forward: "Image features and image tokens do not match")."""
    from transformers import AutoProcessor

    from vlexp import families
    from vlexp.models import tiny

    name, model = _tiny_model(preset)
    processor = AutoProcessor.from_pretrained(tiny.ensure(name))
    assert processor.image_token_id in families.placeholder_token_ids(model.config)


@pytest.mark.parametrize("preset", ["tiny_internvl", "tiny_glm4v", "tiny_minicpmv"])
def test_video_data_stops_before_loading_where_vlexp_cannot_count_it(preset, tmp_path):
    result = run_cli(f"model={preset}", "data=shapes_video", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "family reads images only" in result.stderr


# Each new real preset and what its plan line must say: the model card's size (InternVL3.5-8B:
# "8.5B" = 0.3B vision + 8.2B language; GLM-4.5V: 106B language model, ~12B active, of which
# transformers builds all but the multi-token-prediction layer).
PLANS = {
    "internvl3_5_8b": "(8.53B params,",
    "glm4_1v_9b_thinking": "(10.3B params,",
    "glm4_5v": "(104B params, 10.9B active per token,",
    # MiniCPM-V 4.6: 1,300,428,016 = the bf16 bytes of its safetensors header / 2.
    "minicpm_v4_6": "(1.3B params,",
    # LLaVA-OneVision-1.5-8B: Qwen3-8B (8,190,735,360, its card's "8.2B") + RICE-ViT-L and merger.
    "llava_onevision1_5_8b": "(8.53B params,",
}


@pytest.mark.parametrize("preset", list(PLANS))
def test_each_new_preset_plans_offline_from_its_bundled_config(preset, capsys, monkeypatch):
    from vlexp.plan import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main([f"model={preset}", "algo=grpo"])
    out = capsys.readouterr().out
    assert code in (0, 1) and PLANS[preset] in out, out
    assert "per GPU:" in out


def test_lora_dropout_on_glm45v_stops_before_loading_with_the_fix():
    """PEFT turns LoRA on GLM-4.5V's MLP names into adapters on the experts' stacked
    parameters, whose ParamWrapper raises on any dropout: said before loading, with the key."""
    from vlexp.validate import ConfigError, validate

    with pytest.raises(ConfigError, match=r"set memory.peft.lora_dropout=0"):
        validate(compose(["model=glm4_5v", "memory=lora"]), machine=False)
    validate(compose(["model=glm4_5v", "memory=lora", "memory.peft.lora_dropout=0"]), machine=False)


def test_a_trainer_that_cuts_images_by_row_stops_before_loading_on_minicpmv(tmp_path):
    """MiniCPM-V packs a batch's images into one pixel row; online DPO cuts image inputs by
    row, which would pair images with the wrong prompts: said before the model loads."""
    result = run_cli("model=tiny_minicpmv", "algo=online_dpo", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "packs every image of a batch into one row of pixel_values" in result.stderr
    assert "OnlineDPOTrainer" in result.stderr and "model tiny_minicpmv:" not in result.stderr
