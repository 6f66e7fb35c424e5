"""Images for TRL 1.16's reference-free preference trainers (ORPO; CPO, which also runs SimPO).

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
  chosen-then-rejected order).

Images only: video records stop when the trainer is built (no collator carries videos here).
"""

from __future__ import annotations

import functools
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
            model = functools.partial(model, **twice)
        return super().concatenated_forward(model, batch)


def _build(name: str) -> type:
    if name == "ORPOTrainer":
        from trl.experimental.orpo import ORPOTrainer as base
    else:
        from trl.experimental.cpo import CPOTrainer as base
    doc = f"TRL's {name} with images (vlexp.algorithms.preference)."
    return type(name, (ImagePreferenceMixin, base), {"__doc__": doc, "__module__": __name__})


def __getattr__(name: str) -> type:
    # Built on first access, so importing this module does not import trl.
    if name in ("ORPOTrainer", "CPOTrainer"):
        cls = _build(name)
        globals()[name] = cls
        return cls
    raise AttributeError(name)
