"""Images for TRL 1.16's reference-free preference trainers (ORPO; CPO, which also runs SimPO),
and the token types TRL's online DPO leaves out (`TokenTypesMixin`, at the end).

`trl.experimental.orpo.ORPOTrainer` and `trl.experimental.cpo.CPOTrainer` are text-only:
they read `processing_class.pad_token_id` (a VLM processor has none), tokenize the rendered
prompt with the tokenizer (one `<|image_pad|>` per image, never expanded to the image's
tokens) and call the model with `input_ids` and `attention_mask` only. Their losses
(`odds_ratio_loss`, `cpo_loss`), the NLL term, log-prob sums and metrics are used as TRL
wrote them; three input pieces around them carry the images:

* `Processing`: what the trainer calls as its `processing_class`. Text goes through the
  real processor together with the row's images, so every image placeholder becomes the
  image's token run (the same ids the model's vision tower fills); the chat template is the
  processor's; token facts (pad, bos, eos, decoding) are the tokenizer's.
* `ImageCollator`: TRL's own `DPODataCollatorWithPadding`, plus the batch's images through
  the processor's image processor (`pixel_values`, `image_grid_thw`, ...), made per batch so
  no pixel array is stored in the data set.
* `concatenated_forward`: TRL's, called with the model bound to those image inputs (chosen
  and rejected rows share their prompt, so the batch's images are given twice, in TRL's
  chosen-then-rejected order) and to the token types the processor would have made
  (`ImageForward`): Qwen2.5-VL and Qwen3-VL compute their 3-D positions only from
  `mm_token_type_ids` (without them Qwen2.5-VL silently uses 1-D positions, so training saw
  other logits than inference; Qwen3-VL refuses), Gemma 3 its image attention from
  `token_type_ids`.

Images only: video records stop when the trainer is built (no collator carries videos here).
"""

from __future__ import annotations

from typing import Any

# Keys of a batch's image inputs for the model, next to TRL's padded text tensors.
IMAGES_KEY = "vlexp_image_inputs"


def load_images(paths: list | None) -> list:
    """The row's images as RGB PIL images (paths, or images already loaded)."""
    from PIL import Image

    loaded = []
    for item in paths or []:
        image = Image.open(item) if isinstance(item, str) else item
        loaded.append(image.convert("RGB"))
    return loaded


class Processing:
    """The VLM processor, shaped as the text tokenizer TRL's text-only trainers call."""

    def __init__(self, processor: Any):
        self.processor = processor
        self.images: list = []  # the images of the row being tokenized (set per row)

    def __call__(self, text: str, add_special_tokens: bool = False, **kwargs: Any) -> dict:
        # The processor expands each image placeholder to that image's token run.
        out = self.processor(
            text=[text], images=self.images or None, add_special_tokens=add_special_tokens
        )
        return {
            "input_ids": list(out["input_ids"][0]),
            "attention_mask": list(out["attention_mask"][0]),
        }

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        return self.processor.apply_chat_template(*args, **kwargs)  # the VLM's template

    def save_pretrained(self, *args: Any, **kwargs: Any) -> Any:
        return self.processor.save_pretrained(*args, **kwargs)  # the whole processor

    def __getattr__(self, name: str) -> Any:
        # pad/bos/eos token ids, batch_decode, ...: the tokenizer's (the processor lacks them).
        return getattr(self.processor.tokenizer, name)


class ImageCollator:
    """TRL's preference collator, plus the batch's image inputs under `IMAGES_KEY`."""

    def __init__(self, text_collator: Any, processor: Any):
        self.text_collator = text_collator
        # Not `.processor`: the video collator wraps only collators that carry videos.
        self.images_processor = processor

    def __call__(self, features: list[dict]) -> dict:
        batch = self.text_collator(features)
        images = [image for row in features for image in load_images(row.get("images"))]
        if images:
            inputs = self.images_processor.image_processor(images=images, return_tensors="pt")
            batch[IMAGES_KEY] = dict(inputs)
        return batch


class ImageForward:
    """The model with the batch's image inputs and the token types rebuilt from the ids.

    TRL pads prompt + answer ids itself, so the processor's per-token type ids are lost; they
    are the ids' placeholders (1 image, 2 video, as the processor writes them), under the name
    the processor gives them (`mm_token_type_ids` for Qwen, `token_type_ids` for Gemma 3).
    """

    def __init__(self, model: Any, images: dict, types_key: str | None, token_ids: dict):
        self.model, self.images = model, images
        self.types_key, self.token_ids = types_key, token_ids

    def __call__(self, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        if self.types_key is not None:
            types = torch.zeros_like(input_ids)
            for value, token_id in self.token_ids.items():
                types[input_ids == token_id] = value
            kwargs[self.types_key] = types
        return self.model(input_ids, *args, **self.images, **kwargs)


def token_types(processor: Any, config: Any) -> tuple[str | None, dict[int, int]]:
    """(name, {type value: placeholder id}) of the per-token types the processor makes."""
    names = getattr(processor, "model_input_names", ())
    key = next((k for k in ("mm_token_type_ids", "token_type_ids") if k in names), None)
    ids = {}
    for value, attributes in (
        (1, ("image_token_id", "image_token_index")),
        (2, ("video_token_id",)),
    ):
        found = [getattr(config, a) for a in attributes if getattr(config, a, None) is not None]
        if found:
            ids[value] = found[0]
    return key, ids


class ImagePreferenceMixin:
    """ORPO/CPO with images; see the module docstring. Sits before TRL's trainer in the MRO."""

    def __init__(self, *args: Any, processing_class: Any = None, **kwargs: Any):
        from trl.experimental.utils import DPODataCollatorWithPadding

        self.vision_processing = Processing(processing_class)
        pad_id = processing_class.tokenizer.pad_token_id
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = ImageCollator(
                DPODataCollatorWithPadding(pad_token_id=pad_id), processing_class
            )
        super().__init__(*args, processing_class=self.vision_processing, **kwargs)

    def tokenize_row(self, feature: dict, model: Any = None) -> dict:
        self.vision_processing.images = load_images(feature.get("images"))
        try:
            return super().tokenize_row(feature, model)
        finally:
            self.vision_processing.images = []

    def concatenated_forward(self, model: Any, batch: dict) -> Any:
        images = batch.get(IMAGES_KEY)
        if images:
            import torch

            twice = {key: torch.cat([value, value]) for key, value in images.items()}
            config = self.accelerator.unwrap_model(model).config
            key, ids = token_types(self.vision_processing.processor, config)
            model = ImageForward(model, twice, key, ids)
        return super().concatenated_forward(model, batch)


class TokenTypesMixin:
    """TRL 1.16's OnlineDPOTrainer with the token types its `_forward` leaves out.

    `_forward` (policy and reference log-probs of the sampled pair) passes the image fields
    but not `mm_token_type_ids` / `token_type_ids`, so Qwen2.5-VL trained on 1-D positions
    (Qwen3-VL refuses) and Gemma 3 without its image attention, while generation used the
    processor's. The model it calls gets them rebuilt from the ids, as for ORPO/CPO
    (`ImageForward`, no extra image inputs). tests/unit/test_parity.py fails if a TRL release
    changes what `_forward` passes.
    """

    def _forward(self, model: Any, prompt_ids: Any, *args: Any, **kwargs: Any) -> Any:
        config = self.accelerator.unwrap_model(model).config
        key, ids = token_types(self.processing_class, config)
        return super()._forward(ImageForward(model, {}, key, ids), prompt_ids, *args, **kwargs)


def _build(name: str) -> type:
    mixin: type = ImagePreferenceMixin
    if name == "ORPOTrainer":
        from trl.experimental.orpo import ORPOTrainer as base
    elif name == "CPOTrainer":
        from trl.experimental.cpo import CPOTrainer as base
    else:
        from trl.experimental.online_dpo import OnlineDPOTrainer as base

        mixin = TokenTypesMixin
    doc = f"TRL's {name} with images (vlexp.algorithms.preference)."
    return type(name, (mixin, base), {"__doc__": doc, "__module__": __name__})


def __getattr__(name: str) -> type:
    # Built on first access, so importing this module does not import trl.
    if name in ("ORPOTrainer", "CPOTrainer", "OnlineDPOTrainer"):
        cls = _build(name)
        globals()[name] = cls
        return cls
    raise AttributeError(name)
