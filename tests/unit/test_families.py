"""The model families of issue 16 (Qwen3-VL dense/MoE, Qwen3.5, Gemma 3): their family rows,
bundled configs and planner numbers, and box rewards that follow the family's convention."""

from __future__ import annotations

import json

import pytest

from tests.helpers import compose
from vlexp import families, runplan

# Parameter totals of the bundled configs, built on the meta device by transformers 5.24.
# Qwen3-VL-8B's equals the weight total published with its config.json (8,767,123,696).
BUNDLED = {
    "Qwen/Qwen3-VL-2B-Instruct": ("qwen3_vl", 2_127_532_032),
    "Qwen/Qwen3-VL-4B-Instruct": ("qwen3_vl", 4_437_815_808),
    "Qwen/Qwen3-VL-8B-Instruct": ("qwen3_vl", 8_767_123_696),
    "Qwen/Qwen3-VL-30B-A3B-Instruct": ("qwen3_vl_moe", 31_070_754_032),
    "Qwen/Qwen3.5-27B": ("qwen3_5", 27_356_728_560),
    "Qwen/Qwen3.5-35B-A3B": ("qwen3_5_moe", 35_107_181_936),
    # Gemma 3: the totals keras-hub's Gemma 3 presets publish for the same weights (medgemma
    # 4b/27b `params`), also the Hub's safetensors counts of google/gemma-3-*-it.
    "google/gemma-3-4b-it": ("gemma3", 4_300_079_472),
    "google/gemma-3-12b-it": ("gemma3", 12_187_325_040),
    "google/gemma-3-27b-it": ("gemma3", 27_432_406_640),
    # The Hub page gives 8.03B (rounded); Qwen2-7B-Instruct's 7,615,616,512 + 64 x 3584 x 2
    # for the two added tokens padded to 64 + SigLIP (26 layers, no head) + projector + newline.
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": ("llava_onevision", 8_030_807_584),
}
OPTIONS = {
    "qwen3_vl_2b": "Qwen/Qwen3-VL-2B-Instruct",
    "qwen3_vl_4b": "Qwen/Qwen3-VL-4B-Instruct",
    "qwen3_vl_8b": "Qwen/Qwen3-VL-8B-Instruct",
    "qwen3_vl_30b_a3b": "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "qwen3_5_27b": "Qwen/Qwen3.5-27B",
    "qwen3_5_35b_a3b": "Qwen/Qwen3.5-35B-A3B",
    "gemma3_4b": "google/gemma-3-4b-it",
    "gemma3_12b": "google/gemma-3-12b-it",
    "gemma3_27b": "google/gemma-3-27b-it",
    "llava_onevision_7b": "llava-hf/llava-onevision-qwen2-7b-ov-hf",
}


def test_family_rows_hold_what_differs():
    from vlexp import families

    for name in ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
        family = families.FAMILIES[name]
        assert family.pixels_per_token == 32 and family.patch_size == 16, name
        assert family.box_frame == "relative_1000", name
        assert family.pixel_budget and family.tiny is not None
    assert families.FAMILIES["qwen2_5_vl"].pixels_per_token == 28
    gemma = families.of_model_type("gemma3")
    assert (gemma.box_frame, gemma.pixel_budget) == ("original", False)
    assert all(f.box_frame in families.BOX_FRAMES for f in families.FAMILIES.values())


@pytest.mark.parametrize("option", list(OPTIONS))
def test_model_options_name_a_bundled_config(option):
    from vlexp import families

    cfg = compose([f"model={option}"])
    assert cfg.model.name_or_path == OPTIONS[option]
    path = families.bundled_config(cfg.model.name_or_path)
    assert path is not None, option
    model_type = json.loads(path.read_text())["model_type"]
    family = families.of_model_cfg(cfg.model)
    assert family.name == BUNDLED[OPTIONS[option]][0] == model_type
    if family.pixel_budget:
        assert cfg.model.max_pixels == 1280 * 32 * 32
    else:  # Gemma 3, LLaVA-OneVision: the processor decides the size, no budget to set
        assert cfg.model.min_pixels is None and cfg.model.max_pixels is None


@pytest.mark.parametrize("hub_id", list(BUNDLED))
def test_bundled_config_builds_the_published_size(hub_id):
    from vlexp.recipe.estimate import count, meta_model

    option = next(o for o, h in OPTIONS.items() if h == hub_id)
    counts = count(meta_model(compose([f"model={option}"])))
    assert counts.total_numel == BUNDLED[hub_id][1]
    if "A3B" in hub_id:  # 8 of 128 (Qwen3-VL) / 256 (Qwen3.5) experts run per token
        assert 3.5e9 < counts.active_numel < 4.5e9, counts.active_numel
    else:
        assert counts.active_numel == counts.total_numel


def test_plan_of_the_30b_moe_with_lora_and_zero3_prints_offline(capsys):
    from vlexp.plan import main

    code = main(["model=qwen3_vl_30b_a3b", "memory=[lora,zero3]", "launcher.num_processes=8"])
    out = capsys.readouterr().out
    assert "31.1B params, 3.91B active per token" in out
    assert "8 GPU(s)" in out and "per GPU:" in out
    assert "memory holds every expert" in out
    # 1222 tokens for a 1080x1920 image at 1280*32*32 px: 32-px tokens, not Qwen2.5's 28.
    assert "256 text + 1222 image tokens" in out
    # 8 rows of 1,510 tokens through 48 layers of 8 routed experts each (the count measured
    # on an H200) do not fit 80 GB without checkpointing; the plan names the switch that does.
    assert code == 1 and "does NOT fit" in out
    assert "switch to memory=[lora,zero3] memory.gradient_checkpointing=true" in out
    code = main(
        ["model=qwen3_vl_30b_a3b", "memory=[lora,zero3,grad_ckpt]", "launcher.num_processes=8"]
    )
    assert code == 0 and ": fits" in capsys.readouterr().out


def test_planner_reads_head_dim_experts_and_linear_attention():
    from vlexp.recipe.estimate import (
        attention_layers,
        dense_mlp_width,
        head_dim,
        meta_model,
        routed_experts_saved,
    )

    moe = meta_model(compose(["model=qwen3_vl_30b_a3b"])).config.get_text_config()
    assert head_dim(moe) == 128 != moe.hidden_size // moe.num_attention_heads
    # 8 of 128 experts per token, each row keeping 2 x 2048 inputs/outputs + 4 x 768 (bf16)
    assert dense_mlp_width(moe) == 0
    assert routed_experts_saved(moe, 2) == 2 * 8 * (2 * 2048 + 4 * 768)
    hybrid = meta_model(compose(["model=qwen3_5_35b_a3b"])).config.get_text_config()
    assert attention_layers(hybrid) == 10  # 40 layers, 3 Gated-DeltaNet per full attention
    assert dense_mlp_width(hybrid) == 512  # the shared expert
    assert routed_experts_saved(hybrid, 2) == 2 * 8 * (2 * hybrid.hidden_size + 4 * 512)
    dense = meta_model(compose(["model=qwen3_vl_8b"])).config.get_text_config()
    assert routed_experts_saved(dense, 2) == 0


@pytest.mark.parametrize("option", ["gemma3_4b", "gemma3_12b", "gemma3_27b"])
def test_gemma3_presets_plan_offline_with_the_fixed_image_tokens(option, capsys):
    """The bundled config answers the planner with no hub: 256 image tokens per image, the
    config's `mm_tokens_per_image`, and Gemma's sliding/global attention layers (5:1)."""
    from vlexp.plan import main

    main([f"model={option}", "algo=sft"])
    out = capsys.readouterr().out
    assert "256 text + 256 image tokens (1080x1920 px)" in out, out
    assert "per GPU:" in out and "total" in out


def test_llava_onevision_plan_counts_anyres_as_the_real_processor(capsys):
    """The 7B preset's planned image tokens for a 1080x1920 image equal what a
    LlavaOnevisionProcessor with the checkpoint's settings (384 px tiles, 729 tokens each, the
    default 36-grid, anyres_max_9, "full" features) says through its own
    `_get_num_multimodal_tokens`."""
    from transformers import (
        AutoTokenizer,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    from vlexp.models import tiny
    from vlexp.plan import main

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure("llava_onevision"))
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(),
        video_processor=LlavaOnevisionVideoProcessor(),
        tokenizer=tokenizer,
        num_image_tokens=729,
        vision_feature_select_strategy="full",
    )
    real = processor._get_num_multimodal_tokens(image_sizes=[(1080, 1920)])["num_image_tokens"]
    main(["model=llava_onevision_7b", "algo=sft"])
    assert f"256 text + {real[0]} image tokens (1080x1920 px)" in capsys.readouterr().out


def test_gemma3_has_no_pixel_budget_to_check():
    from vlexp.validate.training import check_pixels

    gemma = compose(["model=tiny_gemma3"])
    assert check_pixels(gemma, runplan.of(gemma)) == []
    cfg = compose(["model=tiny_qwen3_vl", "model.min_pixels=20000", "model.max_pixels=10000"])
    assert "32x32 px = one image token" in check_pixels(cfg, runplan.of(cfg))[0]


def test_box_reward_scores_each_familys_perfect_answer_on_one_record():
    """The same record (a 224x168 image, box in its pixels) and each family's own way of
    writing the right box: Qwen3-VL 0..1000 of the image, Qwen2.5-VL pixels of the image its
    processor resized (to 112x84 for the tiny budget, 532x392 for the 7B's), Gemma 3 as is."""
    from PIL import Image

    image, box = Image.new("RGB", (224, 168)), [56, 42, 112, 84]
    answers = {
        "tiny_qwen3_vl": "[250, 250, 500, 500]",
        "qwen3_vl_30b_a3b": "[250, 250, 500, 500]",
        "tiny": "[28, 21, 56, 42]",
        "qwen2_5_vl_7b": "[133, 98, 266, 196]",
        "tiny_gemma3": "[56, 42, 112, 84]",
    }
    for model, answer in answers.items():
        iou = runplan.of(compose([f"model={model}", "reward=[iou]"])).reward_functions()["iou"]
        completion = f"<think>there</think><answer>{answer}</answer>"
        assert iou([completion], box=[json.dumps(box)], images=[[image]]) == [1.0], model
    # Read in the wrong convention, the Qwen2.5-VL answer misses.
    qwen3 = runplan.of(compose(["model=tiny_qwen3_vl", "reward=[iou]"])).reward_functions()["iou"]
    assert qwen3(["<answer>[28, 21, 56, 42]</answer>"], box=[box], images=[[image]]) == [0.0]


def test_box_reward_without_the_image_says_what_it_needs():
    from vlexp.rewards.library import BoxFrame, iou

    with pytest.raises(ValueError, match="needs the record's image"):
        iou(["[0, 0, 1, 1]"], box=["[0, 0, 1, 1]"], box_frame=BoxFrame("relative_1000"))


def test_video_budget_takes_the_patch_of_the_models_family():

    assert (
        runplan.of(compose(["model=tiny_qwen3_vl", "data=shapes_video"])).data.video.patch_size
        == 16
    )
    assert runplan.of(compose(["model=tiny", "data=shapes_video"])).data.video.patch_size == 14


VIDEO_FAMILIES = [f for f in families.FAMILIES.values() if f.video]


@pytest.mark.parametrize("family", VIDEO_FAMILIES, ids=lambda f: f.name)
def test_video_frames_are_sized_for_the_familys_patch(family, tmp_path):
    """A 192x128 clip, where the two patch sizes disagree: 28 px tokens (patch 14) resize it to
    196x140, a 14x10 patch grid; 32 px tokens (patch 16) keep 192x128, a 12x8 grid. Expected:
    qwen-vl-utils' own smart_resize (what inference resizes with), divided by the patch."""
    from qwen_vl_utils.vision_process import smart_resize

    from tests.video_data import write_mp4
    from vlexp.data.videos import Budget, load

    pixels = {"min_pixels": 3136, "max_pixels": 65536}
    grids = {p: [s // p for s in smart_resize(128, 192, factor=2 * p, **pixels)] for p in (14, 16)}
    assert grids[14] != grids[16]  # the case tells the two patch sizes apart
    clip = write_mp4(tmp_path / "clip.mp4", count=8, width=192, height=128, fps=4)
    budget = Budget.from_config({"fps": 2.0, **pixels}, family.patch_size)
    loaded = load({"path": str(clip), "frames": None}, budget)
    frames = loaded.frames.shape[0]  # 4: 2 s at 2 fps
    height, width = grids[family.patch_size]
    assert loaded.grid_thw == (frames // 2, height, width)
    assert loaded.tokens == frames // 2 * height * width // 4


def test_router_loss_weight_follows_trl_rule():
    """None: the checkpoint's coefficient; 0.0: off; any weight on a dense model: refused."""
    from types import SimpleNamespace

    from vlexp.algorithms.moe import aux_loss_coef

    def model(**text):
        config = SimpleNamespace(get_text_config=lambda: SimpleNamespace(**text))
        return SimpleNamespace(config=config)

    moe = model(output_router_logits=False, router_aux_loss_coef=0.001)
    assert aux_loss_coef(moe, None) == 0.001
    assert aux_loss_coef(moe, 0.0) == 0.0 and aux_loss_coef(moe, 0.02) == 0.02
    assert aux_loss_coef(model(hidden_size=8), None) == 0.0
    with pytest.raises(ValueError, match="router_aux_loss_coef=0.01 but .* not a mixture-of"):
        aux_loss_coef(model(hidden_size=8), 0.01)


def test_planner_counts_expert_adapters_only_with_lora_experts():
    """memory=lora trains attention only on the 30B MoE; lora_experts adds one rank-r
    adapter per routed expert on the stacked gate_up/down tensors (PEFT target_parameters),
    which the planner counts from the same PEFT model the run builds."""
    from vlexp.recipe.estimate import count, meta_model

    def adapters(memory: str):
        model = meta_model(compose(["model=qwen3_vl_30b_a3b", f"memory={memory}"]))
        named = [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]
        return model, count(model), named

    _, lora, named = adapters("lora")
    assert not any(".experts." in n or ".visual." in n for n, _ in named)
    assert lora.trainable_numel == sum(numel for _, numel in named) > 0
    model, experts, named = adapters("lora_experts")
    text = model.config.get_text_config()
    r, h, i = 16, text.hidden_size, text.moe_intermediate_size
    # per layer: gate_up (h -> 2i) and down (i -> h), A and B each r x experts wide
    per_layer = r * text.num_experts * ((h + 2 * i) + (i + h))
    expert_adapters = sum(numel for n, numel in named if ".experts." in n)
    assert expert_adapters == text.num_hidden_layers * per_layer == 629_145_600
    assert experts.trainable_numel == lora.trainable_numel + expert_adapters
    assert experts.total_numel == lora.total_numel + expert_adapters


# --- the family is resolved once, at start-up, or the run stops with one message ----------
def test_the_family_is_resolved_once_and_recorded_for_every_later_reader():
    from vlexp import families
    from vlexp.validate import validate

    cfg = compose(["model=tiny_qwen3_vl"])
    assert cfg.model.family is None
    validate(cfg, machine=False)
    assert cfg.model.family == "qwen3_vl"
    # A later reader gets the recorded answer without looking at any config.json again.
    cfg.model.name_or_path = "/nowhere/at/all"
    assert families.of_model_cfg(cfg.model) is families.FAMILIES["qwen3_vl"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.family=qwen3vl"],
            "model.family=qwen3vl is not a vlexp family: did you mean model.family=qwen3_vl?",
        ),
        (
            ["model.name_or_path=someone/not-downloaded"],
            "model.name_or_path=someone/not-downloaded: its config.json is not here",
        ),
        (["model.name_or_path={unknown}"], "is a 'llava_next' model, which no vlexp family claims"),
    ],
    ids=["misspelt-family", "hub-id-offline", "unknown-model-type"],
)
def test_a_family_vlexp_cannot_tell_stops_the_cli_in_one_line(overrides, message, tmp_path):
    from tests.helpers import run_cli

    unknown = tmp_path / "llava"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "llava_next"}))
    args = [arg.format(unknown=unknown) for arg in overrides]
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert message in result.stderr
    assert "model.family" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_declared_family_serves_a_checkpoint_whose_config_is_not_here():
    from vlexp.validate import validate

    cfg = compose(["model.name_or_path=someone/not-downloaded", "model.family=qwen2_5_vl"])
    validate(cfg, machine=False)
    assert cfg.model.family == "qwen2_5_vl"


def test_a_lora_runs_final_dir_has_its_base_models_family(tmp_path):
    from vlexp.validate import validate

    final = tmp_path / "sft" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text('{"base_model_name_or_path": "tiny://qwen3_vl"}')
    cfg = compose([f"model.name_or_path={final}"])
    validate(cfg, machine=False)
    assert cfg.model.family == "qwen3_vl"
