"""The model-family seam: everything that differs between VLM families, in one table.

transformers already maps `config.model_type` to classes (the `Auto*` mappings), so vlexp
loads every model through those; this table holds only what transformers does not say
and vlexp needs: pixels per vision token, the box convention, which parameters form the
vision tower, the reward/critic head, the bundled configs, and the tiny build. Callers ask
the family (`of_model_type`, `of_model`, `of_model_cfg`), never test a model's name.

Importing this package is cheap (no torch, no transformers): the family modules import
their libraries inside the functions that need them.

Where do I add a model family? One module here (see `qwen2_vl.py`, `qwen3.py`, `gemma3.py`,
`llava_onevision.py`, `llava_onevision1_5.py`, `minicpmv.py`; its tiny build is its config
plus `toy.seeded_model`) and one `Family` row in `FAMILIES` below; its bundled configs under
`configs/<hub id>/config.json`; a `conf/model/tiny_<name>.yaml` for its tiny build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).resolve().parent / "configs"
BOX_FRAMES = ("pixels", "relative_1000", "original")


@dataclass(frozen=True)
class Family:
    """What vlexp needs to know about one model family (see the module docstring)."""

    name: str  # also the tiny build's name: tiny://<name>
    model_types: tuple[str, ...]  # the `config.model_type` values of the family
    patch_size: int  # vision patch side in pixels
    merge_size: int  # patches merged per side into one LLM token
    temporal_patch_size: int  # video frames per temporal patch
    # Boxes the model reads and writes: "pixels" = absolute pixels of the image after the
    # processor's resize (Qwen2.5-VL); "relative_1000" = 0..1000 of the image (Qwen2-VL,
    # Qwen3-VL, Qwen3.5); "original" = no convention of its own (Gemma 3), boxes stay in the record's
    # pixels of the original image.
    box_frame: str
    # Regex (re.fullmatch over module names) of the vision tower and merger: frozen by
    # model.freeze_vision, kept free of LoRA adapters by memory=lora.
    vision_modules: str
    # Name part of the language model's modules (4-bit quantization targets, the planner).
    language_module: str
    # Reward-model / PPO-critic head: the family's backbone and pretrained base class
    # (`module:Class`); vlexp.algorithms.reward_model puts a scalar `score` head on them.
    backbone: str
    pretrained_base: str
    # Architecture whose checkpoint key conversion (legacy hub layout -> modules) the value
    # head shares; None when the family saves its modules' own names.
    weight_layout: str | None
    # Tiny build: `module:function` returning (processor, model) for a tokenizer and seed;
    # None when the family has no tiny build yet.
    tiny: str | None
    special_tokens: tuple[str, ...] = field(default=())
    # False for processors that resize every image to one fixed size with a fixed number of
    # image tokens (Gemma 3: `image_seq_length`); model.min_pixels/max_pixels do not apply.
    pixel_budget: bool = True
    # Routed-expert parameters of a mixture-of-experts family (stacked 3-D tensors, not
    # Linear layers): what memory=lora_experts adapts with PEFT's `target_parameters`.
    # Empty for dense families, where that preset stops before loading.
    expert_parameters: tuple[str, ...] = ()
    # True where PEFT itself turns LoRA on the MLP names (`gate_proj`, `up_proj`, `down_proj`)
    # into adapters on the routed experts' stacked parameters (PEFT 0.21's transformers-v4
    # layout conversion, by model_type: GLM-4.5V), which take no LoRA dropout.
    lora_adapts_experts: bool = False
    # Whether the processor and model take videos (Gemma 3's take images only).
    video: bool = True
    # Tokenizer of the tiny build (`module:function(corpus, special_tokens, vocab_size)`);
    # None trains vlexp.models.tiny's byte-level BPE as a Qwen2Tokenizer.
    tiny_tokenizer: str | None = None
    # Tokens one image / one video costs in the prompt, counted as the processor expands the
    # one placeholder the chat template writes (the data check's lengths; `module:function`):
    # `image_tokens(family, processor) -> (width, height, images_in_prompt) -> int` (LLaVA-
    # OneVision tiles a lone image but not one of several) and
    # `video_tokens(family, processor, loaded: vlexp.data.videos.Loaded) -> int`. Qwen3-VL
    # and Qwen3.5 add a `<t seconds>` marker and vision start/end per temporal patch; None
    # for a family without videos.
    image_tokens: str = "vlexp.families.qwen2_vl:image_tokens"
    video_tokens: str | None = "vlexp.families.qwen2_vl:video_tokens"
    # How the processor resizes one image: `resize(family, processor) -> (width, height) ->
    # (width, height)` the vision tower sees (`check_data --show`; the "pixels" box frame).
    resize: str = "vlexp.families.qwen2_vl:resize"
    # Image tokens from the model's config.json alone, for the planner (no processor loaded):
    # `config_image_tokens(model_cfg, config, width, height) -> int`.
    config_image_tokens: str = "vlexp.families.qwen2_vl:config_image_tokens"
    # What the chat template writes for one image / video, which the processor expands
    # (`check_data --show` prints it once with its count).
    image_placeholder: str = "<|image_pad|>"
    video_placeholder: str = "<|video_pad|>"
    # Chat template for tool calls (`module:function` -> template text) when the family's own
    # renders none (Qwen2.5-VL's); None: the checkpoint's own template renders them (env=).
    tool_template: str | None = None
    # True where the processor packs every image of a call into one row of pixel_values,
    # (1, C, patch, L), with `target_sizes` per piece (MiniCPM-V's NaViT packing): TRL's GRPO
    # trainers cut pixel rows per prompt, so vlexp carries each prompt's own
    # (vlexp.algorithms.packed_images); SFT and DPO process whole batches as the processor does.
    packed_images: bool = False
    # The processor's text defaults, replacing its own (`processor.text_kwargs`), as
    # (key, value) pairs; None keeps them. MiniCPM-V's processor pads (left) and returns tensors
    # unless told otherwise, where TRL's generation expects one unpadded list per prompt as
    # every other processor gives.
    processor_text_kwargs: tuple[tuple[str, Any], ...] | None = None
    # Why DeepSpeed ZeRO-3 cannot train the family (refused before loading); None: it can.
    zero3_refusal: str | None = None

    @property
    def pixels_per_token(self) -> int:
        """Side in pixels of the square one LLM image token covers (28 for Qwen2.5-VL)."""
        return self.patch_size * self.merge_size

    def load(self, attribute: str) -> Any:
        """The callable a `module:function` field names (imports the module)."""
        from importlib import import_module

        module, _, name = getattr(self, attribute).partition(":")
        return getattr(import_module(module), name)


_QWEN_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

_QWEN2 = "transformers.models.qwen2_vl.modeling_qwen2_vl"
_QWEN2_5 = "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl"

QWEN2_5_VL = Family(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    box_frame="pixels",
    vision_modules=r"(.*\.)?visual(\..*)?",
    language_module="language_model",
    backbone=f"{_QWEN2_5}:Qwen2_5_VLModel",
    pretrained_base=f"{_QWEN2_5}:Qwen2_5_VLPreTrainedModel",
    weight_layout="Qwen2VLForConditionalGeneration",
    tiny="vlexp.families.qwen2_vl:tiny_qwen2_5_vl",
    special_tokens=_QWEN_TOKENS,
    tool_template="vlexp.families.qwen2_vl:tool_chat_template",
)


def _variant(base: Family, name: str, module: str, prefix: str, **changes: Any) -> Family:
    """`base` for the model_type `name`: its own backbone and base classes (`<prefix>Model`,
    `<prefix>PreTrainedModel` in `module`), no tiny build unless `changes` names one."""
    return replace(
        base,
        name=name,
        model_types=(name,),
        backbone=f"{module}:{prefix}Model",
        pretrained_base=f"{module}:{prefix}PreTrainedModel",
        **{"tiny": None, **changes},
    )


# Qwen2-VL: Qwen2.5-VL's geometry, module names and key layout; its own classes. Its boxes are
# 0..1000 of the image, `<|box_start|>(x1,y1),(x2,y2)<|box_end|>` (the Qwen2-VL report;
# Qwen2.5-VL moved to absolute pixels of the resized image).
QWEN2_VL = _variant(QWEN2_5_VL, "qwen2_vl", _QWEN2, "Qwen2VL", box_frame="relative_1000")

# Qwen3-VL and Qwen3.5: patch 16, 2x2 merge -> 32x32 px per LLM token, boxes in 0..1000 of
# the image. Their hub checkpoints already use the module names (no key conversion) except
# the MoE experts, which transformers converts by model_type for any class of the family.
_QWEN3_VL = "transformers.models.qwen3_vl.modeling_qwen3_vl"
_QWEN3_VL_MOE = "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe"
_QWEN3_5 = "transformers.models.qwen3_5.modeling_qwen3_5"
_QWEN3_5_MOE = "transformers.models.qwen3_5_moe.modeling_qwen3_5_moe"
_GEMMA3 = "transformers.models.gemma3.modeling_gemma3"
_EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")
_TINY3 = "vlexp.families.qwen3:tiny_"
_VIDEO_TIMESTAMPS = "vlexp.families.qwen3:video_tokens"  # `<t seconds>` per temporal patch

QWEN3_VL = _variant(
    QWEN2_5_VL, "qwen3_vl", _QWEN3_VL, "Qwen3VL", tiny=f"{_TINY3}qwen3_vl", patch_size=16,
    box_frame="relative_1000", weight_layout=None, video_tokens=_VIDEO_TIMESTAMPS,
    tool_template=None,
)  # fmt: skip
QWEN3_VL_MOE = _variant(
    QWEN3_VL, "qwen3_vl_moe", _QWEN3_VL_MOE, "Qwen3VLMoe", tiny=f"{_TINY3}qwen3_vl_moe",
    expert_parameters=_EXPERTS,
)  # fmt: skip
QWEN3_5 = _variant(QWEN3_VL, "qwen3_5", _QWEN3_5, "Qwen3_5", tiny=f"{_TINY3}qwen3_5")
QWEN3_5_MOE = _variant(
    QWEN3_5, "qwen3_5_moe", _QWEN3_5_MOE, "Qwen3_5Moe", tiny=f"{_TINY3}qwen3_5_moe",
    expert_parameters=_EXPERTS,
)  # fmt: skip
# Gemma 3's control tokens, in Gemma's order (its processor finds the image ones by name).
_GEMMA_TOKENS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)
# Gemma 3: SigLIP tower (patch 14 at 896 px) average-pooled 4x4 into a fixed 256 tokens per
# image; the planner reads the real numbers from the config.
GEMMA3 = Family(
    name="gemma3",
    model_types=("gemma3",),
    patch_size=14,
    merge_size=4,
    temporal_patch_size=1,
    box_frame="original",
    vision_modules=r"(.*\.)?(vision_tower|multi_modal_projector)(\..*)?",
    language_module="language_model",
    backbone=f"{_GEMMA3}:Gemma3Model",
    pretrained_base=f"{_GEMMA3}:Gemma3PreTrainedModel",
    weight_layout=None,
    tiny="vlexp.families.gemma3:tiny_gemma3",
    special_tokens=_GEMMA_TOKENS,
    pixel_budget=False,
    video=False,
    tiny_tokenizer="vlexp.families.gemma3:tiny_tokenizer",
    image_tokens="vlexp.families.gemma3:image_tokens",
    video_tokens=None,
    resize="vlexp.families.gemma3:resize",
    config_image_tokens="vlexp.families.gemma3:config_image_tokens",
    image_placeholder="<start_of_image>",
    video_placeholder="",
)

# LLaVA-OneVision: SigLIP tower (384 px tiles, patch 14: 729 tokens per tile) + projector +
# Qwen2. AnyRes: a lone image is tiled on the best grid resolution plus one base tile, each
# image of several is one tile (vlexp.families.llava_onevision counts both as the processor
# does); no pixel budget. No box convention on its model card or in its processor: boxes stay
# in the record's pixels. No video through vlexp: its video path samples frames at a Qwen
# patch geometry that LLaVA-OneVision's video processor does not use.
_LLAVA_OV = "transformers.models.llava_onevision.modeling_llava_onevision"
_LLAVA_OV_FUNCTIONS = "vlexp.families.llava_onevision:"
LLAVA_ONEVISION = Family(
    name="llava_onevision",
    model_types=("llava_onevision",),
    patch_size=14,
    merge_size=1,
    temporal_patch_size=1,
    box_frame="original",
    vision_modules=r"(.*\.)?(vision_tower|multi_modal_projector)(\..*)?",
    language_module="language_model",
    backbone=f"{_LLAVA_OV}:LlavaOnevisionModel",
    pretrained_base=f"{_LLAVA_OV}:LlavaOnevisionPreTrainedModel",
    weight_layout=None,  # transformers converts the llava-hf layout by model_type
    tiny=f"{_LLAVA_OV_FUNCTIONS}tiny_llava_onevision",
    special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
    pixel_budget=False,
    video=False,
    image_tokens=f"{_LLAVA_OV_FUNCTIONS}image_tokens",
    video_tokens=None,
    resize=f"{_LLAVA_OV_FUNCTIONS}resize",
    config_image_tokens=f"{_LLAVA_OV_FUNCTIONS}config_image_tokens",
    image_placeholder="<image>",
    video_placeholder="",
)

# LLaVA-OneVision-1.5: RICE-ViT tower (patch 14, 2x2 merger: one token per 28x28 px, a CLS token
# per image) + Qwen3, processed at native resolution as Qwen2-VL (`smart_resize` within the pixel
# budget; vlexp.families.llava_onevision1_5) but 1 frame per temporal patch; 1-D text positions
# (no M-RoPE). No box convention: neither the model card nor the processor states a coordinate
# frame, and its training code has no grounding format, so boxes stay in the record's pixels.
# Videos: frames sampled and resized as its model card does (qwen-vl-utils), one pad per merged
# patch of each frame.
_LLAVA_OV1_5 = "transformers.models.llava_onevision1_5.modeling_llava_onevision1_5"
LLAVA_ONEVISION1_5 = Family(
    name="llava_onevision1_5",
    model_types=("llava_onevision1_5",),
    patch_size=14,
    merge_size=2,
    temporal_patch_size=1,
    box_frame="original",
    vision_modules=r"(.*\.)?visual(\..*)?",  # the tower holds its merger
    language_module="language_model",
    backbone=f"{_LLAVA_OV1_5}:LlavaOnevision15Model",
    pretrained_base=f"{_LLAVA_OV1_5}:LlavaOnevision15PreTrainedModel",
    # The released weights keep the original layout (`visual.*`, `model.layers.*`), which
    # transformers renames for its own class only: the value head borrows that renaming.
    weight_layout="LlavaOnevision15ForConditionalGeneration",
    tiny="vlexp.families.llava_onevision1_5:tiny_llava_onevision1_5",
    special_tokens=_QWEN_TOKENS,
)

_INTERNVL = "transformers.models.internvl.modeling_internvl"
# InternVL3 / 3.5 (`-HF` checkpoints): InternViT patch 14 at 448-px tiles, pixel shuffle 0.5
# (2x2 patches per LLM token: 256 tokens a tile), up to 12 tiles + a thumbnail per image
# (vlexp.families.internvl). Boxes are 0..1000 of the image, `<ref>x</ref><box>[[x1, y1, x2,
# y2]]</box>` (InternVL's grounding data format); the tower and projector are the vision modules.
INTERNVL = Family(
    name="internvl",
    model_types=("internvl",),
    patch_size=14,
    merge_size=2,
    temporal_patch_size=1,
    box_frame="relative_1000",
    vision_modules=r"(.*\.)?(vision_tower|multi_modal_projector)(\..*)?",
    language_module="language_model",
    backbone=f"{_INTERNVL}:InternVLModel",
    pretrained_base=f"{_INTERNVL}:InternVLPreTrainedModel",
    weight_layout=None,
    tiny="vlexp.families.internvl:tiny_internvl",
    special_tokens=_QWEN_TOKENS
    + ("<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>")
    + ("</box>", "<video>"),
    pixel_budget=False,
    # InternVLProcessor takes videos (one tile per frame, `FrameN:` labels), but vlexp does not
    # count those tokens yet: video data stops before loading.
    video=False,
    image_tokens="vlexp.families.internvl:image_tokens",
    video_tokens=None,
    resize="vlexp.families.internvl:resize",
    config_image_tokens="vlexp.families.internvl:config_image_tokens",
    image_placeholder="<IMG_CONTEXT>",
    video_placeholder="",
)

_GLM4V = "transformers.models.glm4v.modeling_glm4v"
_GLM4V_MOE = "transformers.models.glm4v_moe.modeling_glm4v_moe"
# GLM's control tokens (GLM-4.1V's tokenizer), the box markers its answers use.
_GLM_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|image|>", "<|video|>", "<|begin_of_box|>",
    "<|end_of_box|>",
)  # fmt: skip
# GLM-4.1V / 4.5V: a Qwen2.5-VL-style tower (patch 14, 2x2 merge, temporal patch 2) whose
# processor resizes an image as a 2-frame clip (vlexp.families.glm4v); boxes 0..1000 of the
# image, the answer between `<|begin_of_box|>` and `<|end_of_box|>`. The tower (`visual`) holds
# its merger and downsampling; GLM-4.5V's language model is a MoE (128 routed experts).
GLM4V = Family(
    name="glm4v",
    model_types=("glm4v",),
    patch_size=14,
    merge_size=2,
    temporal_patch_size=2,
    box_frame="relative_1000",
    vision_modules=r"(.*\.)?visual(\..*)?",
    language_module="language_model",
    backbone=f"{_GLM4V}:Glm4vModel",
    pretrained_base=f"{_GLM4V}:Glm4vPreTrainedModel",
    weight_layout=None,
    tiny="vlexp.families.glm4v:tiny_glm4v",
    special_tokens=_GLM_TOKENS,
    # Glm4vProcessor takes videos (per frame `<|begin_of_image|>` + pads + `<|end_of_image|>` +
    # the second), but vlexp does not count those tokens yet: video data stops before loading.
    video=False,
    image_tokens="vlexp.families.glm4v:image_tokens",
    video_tokens=None,
    resize="vlexp.families.glm4v:resize",
    config_image_tokens="vlexp.families.glm4v:config_image_tokens",
    image_placeholder="<|image|>",
    video_placeholder="",
)
GLM4V_MOE = _variant(
    GLM4V, "glm4v_moe", _GLM4V_MOE, "Glm4vMoe", expert_parameters=_EXPERTS,
    lora_adapts_experts=True,
)  # fmt: skip

_MINICPMV = "transformers.models.minicpmv4_6.modeling_minicpmv4_6"
_MINICPMV_FUNCTIONS = "vlexp.families.minicpmv:"
# MiniCPM-V 4.6: SigLIP tower (patch 14) with a window-attention merger inside and an MLP merger
# after it (2x2 twice: one token per 56x56 px), a Qwen3.5 language model. Its processor slices:
# the whole image at about 448^2 px plus up to 9 slices of about that size
# (vlexp.families.minicpmv); no pixel budget. The tokenizer has `<ref>`/`<box>` tokens, but
# neither the model card nor the processor states a coordinate frame: boxes stay in the record's
# pixels. Videos: the processor takes them (1 fps frames, each sliced), but vlexp does not count
# those tokens yet: video data stops before loading.
MINICPMV = Family(
    name="minicpmv4_6",
    model_types=("minicpmv4_6",),
    patch_size=14,
    merge_size=4,
    temporal_patch_size=1,
    box_frame="original",
    vision_modules=r"(.*\.)?(vision_tower|merger)(\..*)?",
    language_module="language_model",
    backbone=f"{_MINICPMV}:MiniCPMV4_6Model",
    pretrained_base=f"{_MINICPMV}:MiniCPMV4_6PreTrainedModel",
    weight_layout=None,
    tiny=f"{_MINICPMV_FUNCTIONS}tiny_minicpmv",
    special_tokens=_QWEN_TOKENS
    + ("<image>", "</image>", "<slice>", "</slice>", "<image_id>", "</image_id>", "<ref>")
    + ("</ref>", "<box>", "</box>"),
    pixel_budget=False,
    video=False,
    image_tokens=f"{_MINICPMV_FUNCTIONS}image_tokens",
    video_tokens=None,
    resize=f"{_MINICPMV_FUNCTIONS}resize",
    config_image_tokens=f"{_MINICPMV_FUNCTIONS}config_image_tokens",
    image_placeholder="<|image_pad|>",
    video_placeholder="",
    packed_images=True,
    processor_text_kwargs=(),
    zero3_refusal=(
        "its merger runs one MLP call per image slice, a count that differs between ranks, and "
        "ZeRO-3 gathers parameters per call, so the ranks' collectives stop matching (the "
        "2-rank run aborts in its first forward); marking the vision modules as ZeRO-3 leaves "
        "got through the forward but not the optimizer step (DeepSpeed 0.19.8). Use "
        "memory=zero2 or one process"
    ),
)

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        QWEN2_5_VL, QWEN2_VL, QWEN3_VL, QWEN3_VL_MOE, QWEN3_5, QWEN3_5_MOE, GEMMA3,
        LLAVA_ONEVISION, LLAVA_ONEVISION1_5, INTERNVL, GLM4V, GLM4V_MOE, MINICPMV,
    )
}  # fmt: skip


class UnknownFamily(ValueError):
    """A model whose family vlexp has no entry for; the message lists the known ones."""


def of_model_type(model_type: str) -> Family:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = ", ".join(t for f in FAMILIES.values() for t in f.model_types)
    raise UnknownFamily(
        f"model_type {model_type!r} has no vlexp family entry (known: {known}); add one in "
        "vlexp/families/ (see its docstring)"
    )


def of_model(model: Any) -> Family:
    """The family of a loaded model (PEFT and DeepSpeed wrappers see through to its config)."""
    return of_model_type(model.config.model_type)


# Variants of a tiny build, `tiny://<family>+<variant>`: the same architecture with a longer
# warm-up, cached apart (vlexp.models.tiny). `tools`: zoom-tool conversations (env=zoom).
TINY_VARIANTS = ("tools",)


def of_tiny(name: str) -> Family:
    """The family of the tiny build `tiny://<name>` (`<family>` or `<family>+<variant>`)."""
    base, plus, variant = name.partition("+")
    family = FAMILIES.get(base)
    if family is None or family.tiny is None or (plus and variant not in TINY_VARIANTS):
        builds = ", ".join(f"tiny://{f.name}" for f in FAMILIES.values() if f.tiny)
        raise UnknownFamily(
            f"unknown tiny model 'tiny://{name}': the tiny builds are {builds}, each also as "
            + " or ".join(f"tiny://<build>+{v}" for v in TINY_VARIANTS)
        )
    return family


def tiny_variant(name: str) -> str | None:
    """The variant of the tiny build `tiny://<name>` (`tools` for `qwen2_5_vl+tools`), if any."""
    return name.partition("+")[2] or None


def bundled_config(name_or_path: str) -> Path | None:
    """The bundled `config.json` of a known hub id (the planner works offline), if any."""
    path = CONFIGS / name_or_path / "config.json"
    return path if path.is_file() else None


def model_type_of(name_or_path: str) -> str | None:
    """`model_type` of a model without loading it: tiny build, bundled config, local dir, or
    the Hugging Face cache; None when nothing local says (a hub id not downloaded yet)."""
    if name_or_path.startswith("tiny://"):
        return of_tiny(name_or_path[len("tiny://") :]).model_types[0]
    candidates = [bundled_config(name_or_path), Path(name_or_path).expanduser() / "config.json"]
    candidates.append(_cached_hub_config(name_or_path))
    for path in candidates:
        if path is not None and Path(path).is_file():
            return json.loads(Path(path).read_text(encoding="utf-8")).get("model_type")
    # A LoRA run's final/ holds an adapter: its family is its base model's, as transformers
    # and PEFT load it (adapter_config.json names the base).
    adapter = Path(name_or_path).expanduser() / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        return model_type_of(str(base)) if base and base != name_or_path else None
    return None


def of_model_cfg(model_cfg: Any) -> Family:
    """The family of `cfg.model`: the one `resolve` recorded at start-up in `model.family`,
    else resolved now by the same rule. Every caller gets the same answer, or one error."""
    return resolve(model_cfg)


def resolve(model_cfg: Any) -> Family:
    """The family of `cfg.model`, resolved once at start-up by every entry point
    (`vlexp.validate`, `vlexp.evaluate`) and recorded in `model.family`, so every later
    reader (boxes, lengths, videos, loading, the planner) gets it without a fallback.

    `model.family` when set, else the `model_type` of the checkpoint's config.json (tiny
    build, bundled config, local dir, Hugging Face cache, or the hub's config.json). A model
    no family claims stops here with one message naming `model.family`."""
    declared = model_cfg.get("family") if hasattr(model_cfg, "get") else None
    name_or_path = str(model_cfg.name_or_path)
    family = _declared(str(declared)) if declared else _from_checkpoint(name_or_path)
    _record(model_cfg, family.name)
    return family


def _declared(name: str) -> Family:
    if name in FAMILIES:
        return FAMILIES[name]
    from difflib import get_close_matches

    close = get_close_matches(name, FAMILIES, n=1)
    hint = f"did you mean model.family={close[0]}? " if close else ""
    raise UnknownFamily(
        f"model.family={name} is not a vlexp family: {hint}the families are "
        f"{', '.join(FAMILIES)} (null reads it from the checkpoint's config.json)"
    )


def _from_checkpoint(name_or_path: str) -> Family:
    model_type = model_type_of(name_or_path) or _hub_model_type(name_or_path)
    if model_type is None and (Path(name_or_path).expanduser() / "config.json").is_file():
        raise UnknownFamily(
            f"model.name_or_path={name_or_path}: its config.json names no model_type, so its "
            f"family is unknown: set model.family (one of {', '.join(FAMILIES)})"
        )
    if model_type is None:
        raise UnknownFamily(
            f"model.name_or_path={name_or_path}: its config.json is not here (no local dir, "
            "not in the Hugging Face cache, the hub not reachable), so its family is unknown: "
            f"download it first, or set model.family (one of {', '.join(FAMILIES)})"
        )
    try:
        return of_model_type(model_type)
    except UnknownFamily:
        raise UnknownFamily(
            f"model.name_or_path={name_or_path} is a {model_type!r} model, which no vlexp "
            f"family claims (families: {', '.join(FAMILIES)}): add one in vlexp/families/ "
            "(see its docstring), or set model.family to the family whose processor, box "
            "frame and modules it shares"
        ) from None


def _hub_model_type(repo_id: str) -> str | None:
    """`model_type` from the hub's config.json (a few kB; loading would fetch it anyway);
    None offline or when the hub does not answer."""
    if repo_id.count("/") != 1 or Path(repo_id).expanduser().exists():
        return None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo_id, "config.json")
    except Exception:  # offline, unreachable, gated, no such repo: the caller says what to do
        return None
    return json.loads(Path(path).read_text(encoding="utf-8")).get("model_type")


def _record(model_cfg: Any, name: str) -> None:
    """Write the resolved name into `model.family` (a DictConfig in struct mode, or a run
    dir's config from before the key existed)."""
    from omegaconf import DictConfig, open_dict

    if isinstance(model_cfg, DictConfig):
        with open_dict(model_cfg):
            model_cfg.family = name


def _cached_hub_config(repo_id: str) -> str | None:
    if repo_id.count("/") != 1 or Path(repo_id).expanduser().exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return found if isinstance(found, str) else None


# Special-token ids of a VLM config that are text tokens, not vision placeholders.
_TEXT_TOKENS = ("bos", "eos", "pad", "_pad", "unk", "sep", "cls", "mask", "decoder_start")


def placeholder_token_ids(config: Any) -> list[int]:
    """The vision placeholder tokens a model's config names (Qwen's `image_token_id`,
    `vision_start_token_id`, ...; Gemma 3's `image_token_index`, `boi_token_index`, ...):
    every top-level `*_token_id` / `*_token_index` but the text ones. Works for every family
    transformers configures this way, so generation can keep them out (recipe.run)."""
    ids = set()
    for key, value in config.to_dict().items():
        name = key.removesuffix("_token_id").removesuffix("_token_index")
        if name != key and name not in _TEXT_TOKENS and isinstance(value, int):
            ids.add(value)
    return sorted(ids)
