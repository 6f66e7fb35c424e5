"""Carry video tensors through TRL 1.16's trainers, which hand the processor `images` only.

TRL builds every multimodal batch with `processor(images=..., text=...)` or
`processor.apply_chat_template(...)` and forwards the image fields. Two small pieces add
videos without copying TRL's methods:

* `VideoProcessor`: the real processor, plus the videos of the batch in hand; whenever TRL
  processes text with video pads it adds the pre-sampled frames (`videos`,
  `video_metadata`), so the output gains `pixel_values_videos`, `video_grid_thw`,
  `second_per_grid_ts` and video entries in `mm_token_type_ids`. SFT and DPO pass every
  collated key to the model, so wrapping their collator (`VideoCollator`) is all they need.
* `Carrier`: GRPO tokenizes prompts for generation through the processor (the wrapper
  serves there too), but its log-prob passes forward a fixed list of image fields. The
  carrier keeps each sample's video fields beside the batch and adds them, chunk by chunk,
  to the model call, through the mixin in `vlexp.patches` (which holds the TRL touch points).

`vlexp.recipe.run.build` puts them in place only when the training data has videos.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vlexp.config import algo as algorithm
from vlexp.data.records import DataError
from vlexp.data.videos import VIDEO_PAD, Budget, Loaded, load, processor_inputs

log = logging.getLogger("vlexp")
VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")


def has_videos(dataset: Any) -> bool:
    return dataset is not None and "videos" in dataset.column_names


def load_batch(examples: list[dict], budget: Budget) -> list[list[Loaded]]:
    """Each example's videos, read once per distinct video (GRPO repeats every prompt)."""
    seen: dict[str, Loaded] = {}
    batch = []
    for example in examples:
        loaded = []
        for video in example.get("videos") or []:
            key = repr(video)
            if key not in seen:
                seen[key] = load(video, budget)
            loaded.append(seen[key])
        batch.append(loaded)
    return batch


class VideoProcessor:
    """The processor with this batch's videos attached (attribute access goes to the processor)."""

    def __init__(self, processor: Any, videos: list[list[Loaded]]) -> None:
        self._processor = processor
        self._videos = videos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def __call__(self, *args: Any, text: Any = None, videos: Any = None, **kwargs: Any) -> Any:
        if isinstance(kwargs.get("images"), list):
            # TRL's GRPO marks a prompt without images as None in its per-prompt image lists
            # (video-only rows of a mixed batch); the processor wants an empty list there.
            kwargs["images"] = [[] if item is None else item for item in kwargs["images"]]
        texts = [text] if isinstance(text, str) else text
        if videos is None and texts and any(VIDEO_PAD in t for t in texts):
            kwargs.update(processor_inputs(self._videos_for(texts)))
        elif videos is not None:
            kwargs["videos"] = videos
        return self._processor(*args, text=text, **kwargs)

    def apply_chat_template(self, *args: Any, **kwargs: Any) -> Any:
        # The processor's own method, run with this wrapper as `self`, so that when it tokenizes
        # it calls `self(text=..., images=...)` above and the videos join in.
        return type(self._processor).apply_chat_template(self, *args, **kwargs)

    def _videos_for(self, texts: list[str]) -> list[Loaded]:
        """The videos in order of appearance in `texts`. DPO repeats the prompts (chosen, then
        rejected), so texts may be a whole multiple of the examples."""
        examples = len(self._videos)
        if not examples or len(texts) % examples:
            raise ValueError(f"{len(texts)} texts for a batch of {examples} examples with videos")
        per_text = self._videos * (len(texts) // examples)
        for number, (one_text, videos) in enumerate(zip(texts, per_text, strict=True)):
            if one_text.count(VIDEO_PAD) != len(videos):
                raise ValueError(
                    f"text {number} of the batch has {one_text.count(VIDEO_PAD)} video placeholder(s) "
                    f"but its record has {len(videos)} video(s)"
                )
        return [video for videos in per_text for video in videos]


class VideoCollator:
    """A TRL vision collator whose processor also sees each batch's videos (SFT, DPO)."""

    def __init__(self, collator: Any, budget: Budget) -> None:
        self.collator, self.budget = collator, budget

    def __call__(self, examples: list[dict]) -> dict:
        examples = [dict(example) for example in examples]
        videos = load_batch(examples, self.budget)
        for example in examples:
            example.pop("videos", None)  # TRL's collators reject no key, but keep them clean
        if not any(videos):
            return self.collator(examples)
        processor = self.collator.processor
        self.collator.processor = VideoProcessor(processor, videos)
        try:
            return self.collator(examples)
        finally:
            self.collator.processor = processor


def video_fields(processor: Any, videos: list[Loaded]) -> dict | None:
    """One sample's video tensors, exactly as the processor makes them in a batch."""
    if not videos:
        return None
    placeholder = f"<|vision_start|>{VIDEO_PAD}<|vision_end|>" * len(videos)
    out = processor(text=[placeholder], return_tensors="pt", **processor_inputs(videos))
    fields = {key: out[key] for key in VIDEO_KEYS if key in out}
    if "second_per_grid_ts" in fields:
        import torch

        fields["second_per_grid_ts"] = torch.as_tensor(fields["second_per_grid_ts"])
    return fields


class WithVideos:
    """The model, called by TRL's log-prob loop chunk after chunk; adds each chunk's videos.

    TRL slices the batch into consecutive chunks of rows and calls the model once per chunk,
    so the rows of call k follow those of call k-1.
    """

    def __init__(self, model: Any, fields: list[dict | None], token_ids: tuple[int, int]) -> None:
        self.model, self.fields, self.token_ids = model, fields, token_ids
        self.offset = 0

    def __call__(self, **inputs: Any) -> Any:
        import torch

        input_ids = inputs["input_ids"]  # (rows, P+C)
        rows = self.fields[self.offset : self.offset + input_ids.size(0)]
        self.offset += input_ids.size(0)
        present = [f for f in rows if f]
        for key in VIDEO_KEYS:
            if present and key in present[0]:
                inputs[key] = torch.cat([f[key] for f in present]).to(input_ids.device)
        # Qwen2.5-VL computes its 3-D rope positions only with mm_token_type_ids (1 image pad,
        # 2 video pad); rebuilt from the ids, so prompt padding and completions line up.
        image_id, video_id = self.token_ids
        types = torch.zeros_like(input_ids)
        types[input_ids == image_id] = 1
        types[input_ids == video_id] = 2
        inputs["mm_token_type_ids"] = types
        return self.model(**inputs)


@dataclass
class CarriedBatch:
    """One GRPO batch's videos: per-sample tensors, and the processor that adds them."""

    rows: list[dict | None]
    processor: VideoProcessor


@dataclass
class Carrier:
    """vlexp's side of the GRPO video mixin (vlexp.patches.VideoGRPOMixin): it reads each
    batch's videos once and hands TRL's log-prob loop a model that adds them per chunk."""

    budget: Budget
    forward_keys: tuple[str, ...] = (*VIDEO_KEYS, "mm_token_type_ids")

    def batch(self, inputs: list[dict], processor: Any) -> CarriedBatch | None:
        videos = load_batch(inputs, self.budget)
        if not any(videos):
            return None
        # load_batch shares one Loaded per distinct video: repeated prompts are processed once.
        cache: dict[tuple, dict | None] = {}
        for sample in videos:
            key = tuple(map(id, sample))
            if key not in cache:
                cache[key] = video_fields(processor, sample)
        rows = [cache[tuple(map(id, sample))] for sample in videos]
        return CarriedBatch(rows, VideoProcessor(processor, videos))

    def model_with_videos(self, model: Any, rows: list[dict | None], processor: Any) -> WithVideos:
        tokenizer = processor.tokenizer
        ids = tuple(tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", VIDEO_PAD))
        return WithVideos(model, rows, ids)


def check_supported(
    algo: algorithm.Algorithm, paths: Any, train_set: Any, eval_set: Any, evaluates: bool
) -> None:
    """Before the model loads: the video paths vlexp does not carry stop the run here.
    `algo`, `paths`: the run plan's parts (vlexp.runplan); `evaluates`: train.eval_steps set."""
    if has_videos(train_set) and not algo.videos:
        raise DataError(
            f"{paths.train}: records with videos and algo={algo.name}: its trainer "
            "reads images only (algo.videos=false); use algo=grpo or another GRPO-family "
            "algorithm for reinforcement learning on video data"
        )
    if has_videos(train_set) and algo.args.get("use_vllm"):
        raise DataError(
            f"{paths.train}: records with videos and algo.args.use_vllm=true: vLLM "
            "generation receives images only in vlexp; set algo.args.use_vllm=false "
            "(generation with transformers) for video data"
        )
    if has_videos(eval_set) and evaluates:
        raise DataError(
            f"{paths.eval}: records with videos and train.eval_steps: generation-based "
            "evaluation reads images only; drop train.eval_steps for video data"
        )


def carrier_for(budget: Budget, train_set: Any) -> Carrier | None:
    """The GRPO video carrier when the training data has videos, else None; `budget`: the
    run plan's `data.video`."""
    if not has_videos(train_set):
        return None
    return Carrier(budget)


class VideoCollatorMixin:
    """An SFT/DPO-style trainer whose vision collator also hands the processor the videos
    (`video_budget`: the run's Budget, set where the class is composed)."""

    video_budget: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.data_collator, "processor"):
            raise ValueError(
                f"{type(self).__name__} has no vision collator to carry the videos through"
            )
        # Wrapped while the trainer is being built: the collator TRL chose, plus the videos.
        self.data_collator = VideoCollator(self.data_collator, self.video_budget)
        log.info(
            "videos: %s collator carries them (budget %s)", type(self).__name__, self.video_budget
        )
