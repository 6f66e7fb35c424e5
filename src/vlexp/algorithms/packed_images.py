"""Images packed into one row (MiniCPM-V) through TRL's GRPO trainers, one prompt's at a time.

MiniCPM-V's processor packs every image of a call into a single row of `pixel_values`,
(1, C, patch, L): each piece (the whole image, then its slices) as its patches side by side,
with `target_sizes` (pieces, 2) saying which. TRL 1.16's GRPOTrainer cuts pixel rows per prompt
(by image, tile or grid), so with this layout it asks the image processor for a tile count
(`crop_to_patches`: a TypeError), and any cut of the one row would pair images with the wrong
prompts. `PackedImagesMixin` computes each prompt's own packed images once per generation batch,
carries them with the row through TRL's shuffles and splits (`packed_images`, one entry per
row), and gives each chunk of rows that TRL scores its own. Generation takes the whole batch
as the processor packed it, which the model reads as it should.
"""

from __future__ import annotations

from typing import Any

PACKED_KEYS = ("pixel_values", "target_sizes")
# What TRL computes from the packed row and would cut by row: dropped, each row carries its own.
DROPPED = (*PACKED_KEYS, "num_tiles")


def row_images(inputs: list[dict]) -> list[list | None]:
    """Each row's images, as TRL's GRPOTrainer reads them (`images`, else `image`)."""
    if "images" in inputs[0]:
        return [example.get("images") or None for example in inputs]
    if "image" in inputs[0]:
        return [
            [example["image"]] if example.get("image") is not None else None for example in inputs
        ]
    return [None] * len(inputs)


def packed_rows(processor: Any, inputs: list[dict]) -> list[dict | None]:
    """Per row, its images packed as the processor packs them ({pixel_values, target_sizes},
    on the CPU), or None for a row without images."""
    rows = []
    for images in row_images(inputs):
        if not images:
            rows.append(None)
            continue
        out = processor.image_processor(images=images, return_tensors="pt")
        rows.append({key: out[key] for key in PACKED_KEYS})
    return rows


class WithPackedImages:
    """The model, called by TRL's log-prob loop chunk after chunk; adds each chunk's images,
    packed as the processor would pack that chunk alone (rows of call k follow call k-1's)."""

    def __init__(self, model: Any, rows: list[dict | None]) -> None:
        self.model, self.rows, self.offset = model, rows, 0

    def __call__(self, **inputs: Any) -> Any:
        import torch

        input_ids = inputs["input_ids"]  # (rows, P+C)
        chunk = [r for r in self.rows[self.offset : self.offset + input_ids.size(0)] if r]
        self.offset += input_ids.size(0)
        if chunk:
            pixels = torch.cat([r["pixel_values"] for r in chunk], dim=-1)  # (1, C, patch, L)
            inputs["pixel_values"] = pixels.to(input_ids.device)
            sizes = torch.cat([r["target_sizes"] for r in chunk])  # (pieces, 2)
            inputs["target_sizes"] = sizes.to(input_ids.device)
        return self.model(**inputs)


class _TileCount:
    """The image processor, answering TRL's tile-count question (`crop_to_patches=True`,
    `num_patches`) with one per image: TRL's cuts by that count are dropped anyway."""

    def __init__(self, image_processor: Any) -> None:
        self._image_processor = image_processor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._image_processor, name)

    def __call__(self, images: Any = None, **kwargs: Any) -> dict:
        import torch

        if not kwargs.pop("crop_to_patches", False):
            return self._image_processor(images=images, **kwargs)
        count = sum(len(row) if isinstance(row, list) else 1 for row in images)
        return {"num_patches": torch.ones(count, dtype=torch.long)}


class _Processor:
    """The processor with `_TileCount` as its image processor (for one TRL call)."""

    def __init__(self, processor: Any) -> None:
        self._processor = processor
        self.image_processor = _TileCount(processor.image_processor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._processor(*args, **kwargs)


class PackedImagesMixin:
    """TRL 1.16 GRPOTrainer touch points for packed images (see the module docstring):
    `_generate_and_score_completions` (rows computed, the packed tensors dropped from the
    output), `_compute_loss` and `_get_per_token_logps_and_entropies` (each chunk its rows)."""

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        processor = self.processing_class
        self._packed_rows = packed_rows(processor, inputs)
        self.processing_class = _Processor(processor)
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self.processing_class = processor
        for key in DROPPED:
            output.pop(key, None)
        output["packed_images"] = self._packed_rows  # per row: TRL shuffles and splits it too
        self._packed_rows = None
        return output

    def _compute_loss(self, model: Any, inputs: dict) -> Any:
        self._packed_rows = inputs.get("packed_images")
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._packed_rows = None

    def _get_per_token_logps_and_entropies(
        self, model: Any, input_ids: Any, *args: Any, **kwargs: Any
    ):
        rows = getattr(self, "_packed_rows", None)
        for key in DROPPED:
            kwargs.pop(key, None)
        if rows and any(rows):
            model = WithPackedImages(model, rows)
        return super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)


def refusal(family: Any, trainer_cls: type) -> str | None:
    """Why `trainer_cls` cannot train a family that packs its images (None: it can). GRPO
    and RLOO get `PackedImagesMixin`; SFT, DPO, KTO and the reward model put the processor's
    whole batch through one forward, packed as the processor packs it. The others cut or
    repeat image inputs by row (ORPO/CPO, online DPO, PPO, distillation's teacher forward)."""
    if not family.packed_images:
        return None
    from trl import DPOTrainer, GRPOTrainer, KTOTrainer, RLOOTrainer, SFTTrainer

    from vlexp.algorithms.reward_trainer import RewardModelTrainer

    carried = (GRPOTrainer, RLOOTrainer, SFTTrainer, DPOTrainer, KTOTrainer, RewardModelTrainer)
    if issubclass(trainer_cls, carried):
        return None
    return (
        f"{family.name} packs every image of a batch into one row of pixel_values, and "
        f"{trainer_cls.__name__} cuts or repeats image inputs by row, which would pair images "
        "with the wrong prompts: use SFT, DPO, KTO, the reward model, or a GRPO-family or RLOO "
        "algorithm with this model"
    )


def check_trainer(family: Any, trainer_cls: type, algo_name: str, model_name: str) -> None:
    """`refusal` as an error naming the algorithm, before the model loads."""
    reason = refusal(family, trainer_cls)
    if reason is not None:
        raise ValueError(f"algo={algo_name} on model={model_name}: {reason}")
