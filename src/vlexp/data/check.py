"""The data check: every record validated for the chosen algorithm before a model loads.

    python -m vlexp.check_data data=jsonl data.train=/data/train.jsonl algo=dpo

Per record: JSON and UTF-8, required fields and types (data/fields.py), duplicated ids,
DPO pairs that differ, the columns the GRPO rewards need; then per image (all records, or a
seeded sample of `data.check_sample`): inside the data folder or an allowed root, fetched
only with `data.allow_remote_images`, exists, decodes, not too small, within smart_resize's
aspect ratio; finally the prompt plus its image tokens must fit the length limits, so that
truncation never cuts image tokens. `data.on_bad_record=raise` stops with one message
listing every bad record; `skip` drops them and writes the list to RUN_DIR/bad_records.jsonl.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vlexp.config import algo as algorithm
from vlexp.config import reward as reward_config
from vlexp.data import fields, images, videos
from vlexp.data.records import (
    BadRecord,
    DataError,
    Record,
    image_paths,
    read_jsonl,
    to_example,
    video_paths,
)
from vlexp.data.report import line_number, summary_line, write_bad_records

log = logging.getLogger("vlexp")
# Checks of a record against its converted example, by record format (algo.kind).
RECORD_CHECKS = {"dpo": fields.dpo_pair}
MAX_LISTED = 50  # records listed in the error message; the file holds them all


class DataCheck:
    """Callable used by `build_datasets`: split -> file in, split -> kept records out."""

    def __init__(
        self, cfg: Any, processor: Any, run_dir: Path | None = None, model_dir: str | None = None
    ) -> None:
        """`model_dir`: where the model's config.json is (its context length); by default
        where the processor was loaded from, which is the model's own directory or hub id."""
        algo = algorithm.of(cfg)
        self.cfg, self.data, self.kind = cfg, cfg.data, algo.kind
        self.processor, self.run_dir = processor, run_dir
        # Columns the rewards read, for algorithms whose completions the rewards score.
        self.needs = reward_config.columns(cfg) if algo.generates else {}
        self.record_check = RECORD_CHECKS.get(algo.kind)
        self.roots = [Path(p).expanduser() for p in self.data.get("allowed_image_roots") or []]
        self.image_tokens = images.token_counter(processor)
        self.limits = LengthLimits(cfg, model_dir or processor.tokenizer.name_or_path)
        self.video_budget = videos.Budget.for_run(cfg)
        self.bad: list[tuple[str, BadRecord]] = []
        self.max_listed: int | None = MAX_LISTED  # None lists every bad record
        self.stats: dict[str, dict] = {}

    def __call__(self, files: dict[str, str | list[Record]]) -> dict[str, list[Record]]:
        kept = {split: self.check_split(split, source) for split, source in files.items()}
        for split in kept:
            log.info("%s", summary_line(split, self.stats[split]))
        if self.bad and self.run_dir is not None:
            write_bad_records(self.run_dir / "bad_records.jsonl", self.bad)
        policy = self.data.get("on_bad_record", "raise")
        if self.bad and policy == "raise":
            raise DataError(self.message())
        for split, records in kept.items():
            if not records:
                where = files[split] if isinstance(files[split], str) else "records given"
                raise DataError(f"data.{split}: no usable records left ({where})")
        return kept

    def check_split(self, split: str, source: str | list[Record]) -> list[Record]:
        """Check one split, given as a JSONL path or as records already read."""
        bad_lines: list[BadRecord] = []
        if isinstance(source, list):
            records = source
        else:
            records = read_jsonl(source, self.data.get("image_root"), bad_lines)
        problems: dict[int, BadRecord] = {}
        examples: list[dict | None] = []
        template = self.data.get("prompt_template") or "{question}"
        system = self.data.get("system_prompt")
        for index, record in enumerate(records):
            problem = fields.structure(record, self.kind)
            example = None if problem else to_example(record, self.kind, template, system)
            if example is not None and self.record_check is not None:
                problem = self.record_check(record, example)
            if example is not None and self.needs:
                problem = problem or fields.reward_columns(record, example, self.needs)
            problem = problem or self.image_locations(record) or self.video_locations(record)
            examples.append(example)
            if problem:
                problems[index] = problem
        for extra in (
            fields.duplicate_ids(records),
            fields.column_type_conflicts(records, examples),
        ):
            for index, problem in extra.items():
                problems.setdefault(index, problem)
        stats = self.measure(records, examples, problems)
        bad = sorted(bad_lines + list(problems.values()), key=line_number)
        self.bad += [(split, b) for b in bad]
        stats.update(read=len(records) + len(bad_lines), dropped=Counter(b.reason for b in bad))
        self.stats[split] = stats
        return [r for i, r in enumerate(records) if i not in problems]

    def image_locations(self, record: Record) -> BadRecord | None:
        """Remote policy and containment (no file access); fetches URLs when allowed."""
        key = "images" if "images" in record.fields else "image"
        value = record.fields.get(key)
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        local = []
        try:
            for item in items:
                if images.is_remote(item):
                    if not self.data.get("allow_remote_images", False):
                        raise images.BadImage(
                            "remote image",
                            f"{item} is a URL: set data.allow_remote_images=true to fetch it",
                        )
                    cache = Path(self.cfg.cache_dir).expanduser() / "remote-images"
                    local.append(str(images.fetch(item, cache)))
                else:
                    local.append(str(images.local_path(item, record.image_dir, self.roots)))
        except images.BadImage as err:
            return BadRecord(record.source, key, err.reason, err.detail)
        # The run reads the checked (and, for URLs, cached) files, never the network again.
        record.fields[key] = local if isinstance(value, list) else local[0]
        return None

    def video_locations(self, record: Record) -> BadRecord | None:
        """Every video file (or frame) inside the data folder or an allowed root; no URLs."""
        key = "video" if "video" in record.fields else "videos"
        try:
            for video in video_paths(record):
                for item in [video["path"]] if video["path"] else video["frames"]:
                    if images.is_remote(item):
                        raise images.BadImage(
                            "remote video", f"{item} is a URL: download the video and give its path"
                        )
                    images.local_path(item, record.image_dir, self.roots)
        except images.BadImage as err:
            return BadRecord(record.source, key, err.reason.replace("image", "video"), err.detail)
        return None

    def measure(self, records: list[Record], examples: list, problems: dict) -> dict:
        """Decode the images and count tokens for the (sampled) records still fine."""
        candidates = [i for i in range(len(records)) if i not in problems]
        sample = self.data.get("check_sample")
        if sample is not None and sample < len(candidates):
            seed = self.cfg.get("seed", 0)
            candidates = sorted(random.Random(seed).sample(candidates, sample))
        paths = {p for i in candidates for p in image_paths(records[i])}
        sizes = self._inspect_all(sorted(paths))
        if any(video_paths(records[i]) for i in candidates):
            self._check_takes_videos()
        clips = self._load_videos([records[i] for i in candidates])
        image_counts, video_counts, prompt_counts, truncated = [], [], [], 0
        for index in candidates:
            record = records[index]
            record_paths = image_paths(record)
            failed = [sizes[p] for p in record_paths if isinstance(sizes[p], images.BadImage)]
            if failed:
                key = "images" if "images" in record.fields else "image"
                problems[index] = BadRecord(record.source, key, failed[0].reason, failed[0].detail)
                continue
            loaded = [clips[repr(v)] for v in video_paths(record)]
            broken = [v for v in loaded if isinstance(v, videos.VideoError)]
            if broken:
                key = "video" if "video" in record.fields else "videos"
                problems[index] = BadRecord(record.source, key, "video unreadable", str(broken[0]))
                continue
            tokens = [self.image_tokens(*sizes[p]) for p in record_paths]
            frame_tokens = [v.tokens_for(self.processor) for v in loaded]
            try:
                prompt, total = count_tokens(self.processor, examples[index], tokens + frame_tokens)
            except Exception as err:  # the chat template rejects the messages: name the record
                detail = f"the chat template cannot render it ({type(err).__name__}: {err})"
                problems[index] = BadRecord(record.source, "prompt", "chat template", detail)
                continue
            problem = self.limits.problem(record, prompt, total, sum(tokens), sum(frame_tokens))
            if problem:
                problems[index] = problem
                continue
            truncated += self.limits.truncates(total)
            image_counts.append(sum(tokens))
            video_counts.extend([sum(frame_tokens)] if loaded else [])
            prompt_counts.append(prompt)
        return {
            "checked": len(candidates),
            "image_tokens": image_counts,
            "video_tokens": video_counts,
            "prompt_tokens": prompt_counts,
            "truncated": truncated,
        }

    def _inspect_all(self, paths: list[str]) -> dict[str, Any]:
        min_side = self.data.get("min_image_side", 28)

        def one(path: str):
            try:
                return images.inspect(Path(path), min_side)
            except images.BadImage as err:
                return err

        # PIL decodes outside the GIL: threads overlap file reads and decoding.
        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(paths, pool.map(one, paths), strict=True))

    def _check_takes_videos(self) -> None:
        """A model family that reads images only (Gemma 3) stops at the first video."""
        from vlexp import families

        try:
            family = families.of_model_cfg(self.cfg.model)
        except families.UnknownFamily:
            family = None
        if family is not None and not family.video:
            raise DataError(
                f"data.train: records with videos and model {self.cfg.model.name}: the "
                f"{family.name} family reads images only; use a Qwen2.5-VL, Qwen3-VL or Qwen3.5 "
                "model for video data"
            )

    def _load_videos(self, records: list[Record]) -> dict[str, Any]:
        """repr(video) -> Loaded, or the VideoError saying why it cannot be read."""
        found = {repr(v): v for record in records for v in video_paths(record)}

        def one(video: dict):
            try:
                return videos.load(video, self.video_budget)
            except videos.VideoError as err:
                return err

        if not found:
            return {}
        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(found, pool.map(one, found.values()), strict=True))

    def message(self) -> str:
        lines = [f"{len(self.bad)} bad record(s) (data.on_bad_record=raise):"]
        shown = self.bad if self.max_listed is None else self.bad[: self.max_listed]
        lines += [f"  {bad}" for _, bad in shown]
        if len(shown) < len(self.bad):
            lines.append(f"  ... and {len(self.bad) - len(shown)} more")
        where = f" (all listed in {self.run_dir / 'bad_records.jsonl'})" if self.run_dir else ""
        lines.append(f"Fix them, or set data.on_bad_record=skip to drop them{where}.")
        return "\n".join(lines)


class LengthLimits:
    """The token limits the trainer enforces, from algo.args and the model's context."""

    def __init__(self, cfg: Any, model_dir: str) -> None:
        algo = algorithm.of(cfg)
        # Trainers that generate never truncate prompts (TRL 1.16 has no max_prompt_length
        # for GRPO); the others cut at algo.args.max_length.
        self.generates = algo.generates
        self.max_length = None if algo.generates else cfg.algo.args.get("max_length")
        self.completion = algo.completion_budget()
        self.context, self.context_key = model_context(cfg, model_dir)

    def problem(
        self, record: Record, prompt: int, total: int, image: int, video: int = 0
    ) -> BadRecord | None:
        also = f", {video} video tokens" if video else ""
        what = f"prompt is {prompt} tokens ({image} of them image tokens{also})"
        if self.max_length is not None and prompt >= self.max_length:
            detail = (
                f"{what}, not below algo.args.max_length={self.max_length}: truncation would "
                "cut image tokens or leave no completion; raise max_length or shorten the prompt"
                + (" (fewer frames: data.video.fps / max_frames / max_pixels)" if video else "")
            )
            return BadRecord(record.source, "prompt", "too long", detail)
        need = prompt + self.completion if self.generates else total
        if self.context and need > self.context:
            plus = (
                f" + algo.args.max_completion_length={self.completion}" if self.completion else ""
            )
            detail = f"{what}{plus}: {need} tokens exceed {self.context_key}={self.context}; " + (
                "lower data.video.max_pixels, data.video.max_frames or data.video.fps"
                if video
                else "lower model.max_pixels or shorten the prompt"
            )
            return BadRecord(record.source, "prompt", "too long", detail)
        return None

    def truncates(self, total: int) -> bool:
        return self.max_length is not None and total > self.max_length


def model_context(cfg: Any, model_dir: str) -> tuple[int | None, str]:
    """The model's context length (text config), or vLLM's max_model_length when smaller."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        model_dir,
        trust_remote_code=cfg.model.get("trust_remote_code", False),
    )
    text = getattr(config, "text_config", None) or config
    context = getattr(text, "max_position_embeddings", None)
    key = "the model's max_position_embeddings"
    vllm = cfg.algo.args.get("vllm_max_model_length") if cfg.algo.args.get("use_vllm") else None
    if vllm and (context is None or vllm < context):
        return vllm, "algo.args.vllm_max_model_length"
    return context, key


def count_tokens(processor: Any, example: dict, image_tokens: list[int]) -> tuple[int, int]:
    """(prompt, longest full sequence) in tokens, image pads expanded as the processor does."""

    def length(messages: list, generation_prompt: bool) -> int:
        text = processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        # verbose=False: a prompt over the model's length is reported here, not warned about.
        ids = processor.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return len(ids) - len(image_tokens) + sum(image_tokens)

    if "messages" in example:
        full = length(example["messages"], False)
        return full, full
    prompt = length(example["prompt"], True)
    answers = [example[k] for k in ("completion", "chosen", "rejected") if k in example]
    total = max((length(example["prompt"] + a, False) for a in answers), default=prompt)
    return prompt, total
