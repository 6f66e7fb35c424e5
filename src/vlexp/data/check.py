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

import hashlib
import logging
import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vlexp import families
from vlexp.config import reward as reward_config
from vlexp.data import fields, images, videos
from vlexp.data.lengths import LengthLimits, count_tokens
from vlexp.data.records import (
    BadRecord,
    DataError,
    Record,
    convert,
    image_paths,
    prompting,
    strip_file_scheme,
    video_paths,
)
from vlexp.data.report import line_number, summary_line, write_bad_records
from vlexp.data.sources import Reader
from vlexp.data.spec import DataSpec

log = logging.getLogger("vlexp")
# Checks of a record against its converted example, by record format (algo.kind).
RECORD_CHECKS = {"dpo": fields.dpo_pair, "sft": fields.sft_target, "kto": fields.kto_record}
MAX_LISTED = 50  # records listed in the error message; the file holds them all


class DataCheck:
    """Callable used by `build_datasets`: split -> file in, split -> kept records out."""

    def __init__(
        self,
        spec: DataSpec,
        processor: Any,
        run_dir: Path | None = None,
        model_dir: str | None = None,
        writes_report: bool = True,
        tools: list | None = None,
    ) -> None:
        """`spec`: the run plan's data part (`vlexp.runplan.of(cfg).data`).
        `model_dir`: where the model's config.json is (its context length); by default
        where the processor was loaded from, which is the model's own directory or hub id.
        `writes_report`: write RUN_DIR/bad_records.jsonl (off on every node of a multi-node
        run but the first, whose check writes it for all: the run dir is shared).
        `tools`: the environment's tools (env=), whose schema the chat template writes into
        every prompt; counted in its length."""
        algo = spec.algorithm
        self.spec, self.data, self.kind = spec, spec.node, algo.kind
        self.prompting = prompting(self.data)
        self.processor, self.run_dir, self.writes_report = processor, run_dir, writes_report
        self.tools = tools
        # Columns the rewards read, for algorithms whose completions the rewards score.
        self.needs = reward_config.columns_of(spec.reward_funcs) if algo.rewards else {}
        self.record_check = RECORD_CHECKS.get(algo.kind)
        self.roots = [Path(p).expanduser() for p in self.data.get("allowed_image_roots") or []]
        # 16-bit grayscale images are read from 8-bit copies here (images.eight_bit).
        self.converted = spec.cache_dir / "images-8bit"
        images.set_pixel_limit(self.data.get("max_image_pixels"))
        self.media_tokens = media_tokens(processor)
        # The family (resolved once at start-up, by the run plan) says what an image and a
        # video cost in tokens.
        self.family = spec.family
        self.image_tokens = images.token_counter(processor, self.family)
        self.limits = LengthLimits(
            algo, model_dir or processor.tokenizer.name_or_path, spec.trust_remote_code
        )
        self.video_budget = spec.video
        self.bad: list[tuple[str, BadRecord]] = []
        self.max_listed: int | None = MAX_LISTED  # None lists every bad record
        self.stats: dict[str, dict] = {}

    def __call__(self, files: dict[str, str | list[Record]]) -> dict[str, list[Record]]:
        kept = {split: self.check_split(split, source) for split, source in files.items()}
        for split in kept:
            log.info("%s", summary_line(split, self.stats[split]))
        if self.bad and self.run_dir is not None and self.writes_report:
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
        reader = Reader(self.data)
        records = source if isinstance(source, list) else reader.read(source, bad_lines)
        problems: dict[int, BadRecord] = {}
        examples: list[dict | None] = []
        for index, record in enumerate(records):
            problem = fields.structure(record, self.kind) or self.typed_media_tokens(record)
            # Media paths are final (URLs fetched, 16-bit copies) before the one conversion.
            problem = problem or self.image_locations(record) or self.video_locations(record)
            example = None
            if problem is None:
                example, problem = self.example(record)
            if example is not None and self.record_check is not None:
                problem = self.record_check(record, example)
            if example is not None and self.needs:
                problem = problem or fields.reward_columns(record, example, self.needs)
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
        stats["formats"] = Counter((r.extra.get("file", split), r.format) for r in records)
        media = ("image", "images", "video", "videos")
        stats["with_media"] = sum(any(r.fields.get(k) for k in media) for r in records)
        self.stats[split] = stats
        return [r for i, r in enumerate(records) if i not in problems]

    def example(self, record: Record) -> tuple[dict | None, BadRecord | None]:
        """(the record's trainer example, None) or (None, why it cannot convert): the one
        conversion, which the data set the trainer reads reuses (`records.convert`)."""
        try:
            return convert(record, self.kind, self.prompting), None
        except DataError as err:
            detail = str(err).removeprefix(f"{record.source}: ")
            return None, BadRecord(record.source, "record", "cannot convert", detail)

    def typed_media_tokens(self, record: Record) -> BadRecord | None:
        """Vision tokens typed into the text: the processor expands every image pad it finds,
        so the image count no longer matches (a crash after the model loaded)."""
        for key, text in fields.texts(record.fields):
            for token in self.media_tokens:
                if token in text:
                    detail = (
                        f"'{key}' contains the vision token {token} as text: images go in "
                        "'image'/'images' or as image parts; the processor adds these tokens"
                    )
                    return BadRecord(record.source, key, "vision token in text", detail)
        return None

    def image_locations(self, record: Record) -> BadRecord | None:
        """Remote policy and containment (no file access); fetches URLs when allowed."""
        key = "images" if "images" in record.fields else "image"
        value = record.fields.get(key)
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        local: list = []
        # Rows of a `datasets` data set: its own images (bytes) or paths it names anywhere.
        roots = self.roots + [Path("/")] if record.extra.get("hub") else self.roots
        try:
            for item in items:
                if isinstance(item, dict):
                    local.append(item)
                elif images.is_remote(item):
                    if not self.data.get("allow_remote_images", False):
                        raise images.BadImage(
                            "remote image",
                            f"{item} is a URL: set data.allow_remote_images=true to fetch it",
                        )
                    cache = self.spec.cache_dir / "remote-images"
                    local.append(str(images.fetch(item, cache)))
                else:
                    path = images.local_path(strip_file_scheme(item), record.image_dir, roots)
                    local.append(str(images.eight_bit(path, self.converted)))
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
            seed = self.spec.seed
            candidates = sorted(random.Random(seed).sample(candidates, sample))
        entries = {image_key(p): p for i in candidates for p in image_paths(records[i])}
        sizes = self._inspect_all(entries)
        if any(video_paths(records[i]) for i in candidates):
            self._check_takes_videos()
        clips = self._load_videos([records[i] for i in candidates])
        image_counts, video_counts, prompt_counts, truncated = [], [], [], 0
        for index in candidates:
            record = records[index]
            record_paths = image_paths(record)
            record_sizes = [sizes[image_key(p)] for p in record_paths]
            failed = [size for size in record_sizes if isinstance(size, images.BadImage)]
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
            tokens = [self.image_tokens(*size, len(record_sizes)) for size in record_sizes]
            try:
                frame_tokens = [self.video_tokens(v) for v in loaded]
            except ValueError as err:
                key = "video" if "video" in record.fields else "videos"
                problems[index] = BadRecord(record.source, key, "video unreadable", str(err))
                continue
            try:
                prompt, total = count_tokens(
                    self.processor, examples[index], tokens + frame_tokens, self.tools
                )
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

    def _inspect_all(self, entries: dict[str, Any]) -> dict[str, Any]:
        min_side = self.data.get("min_image_side", 28)

        def one(path: str):
            try:
                return images.inspect(path if isinstance(path, dict) else Path(path), min_side)
            except images.BadImage as err:
                return err

        # PIL decodes outside the GIL: threads overlap file reads and decoding, one per core
        # (more only contend for the GIL between decodes: 8 on 2 cores took 20% longer).
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            return dict(zip(entries, pool.map(one, entries.values()), strict=True))

    def video_tokens(self, loaded: videos.Loaded) -> int:
        """Tokens one video costs, frame markers included, as the family's processor expands it."""
        return self.family.load("video_tokens")(self.family, self.processor, loaded)

    def _check_takes_videos(self) -> None:
        """A model family that reads images only (Gemma 3) stops at the first video."""
        family = self.family
        if not family.video or family.video_tokens is None:
            raise DataError(
                f"data.train: records with videos and model {self.spec.model_name}: the "
                f"{family.name} family reads images only; use a model of a family that takes "
                f"videos ({', '.join(f.name for f in families.FAMILIES.values() if f.video)})"
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


def media_tokens(processor: Any) -> list[str]:
    """The tokenizer's special tokens that stand for images and videos (`<|image_pad|>`,
    `<|vision_start|>`, ...), plus the processor's own image and video tokens."""
    tokenizer = getattr(processor, "tokenizer", processor)
    found = {getattr(processor, name, None) for name in ("image_token", "video_token")}
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for added in decoder.values():
        text = str(getattr(added, "content", added))
        if getattr(added, "special", True) and any(
            word in text for word in ("vision", "image", "video")
        ):
            found.add(text)
    return sorted(t for t in found if t)


def image_key(entry: Any) -> str:
    """A hashable name for an image: its path, or a digest of a data set's image bytes."""
    if isinstance(entry, dict):
        data = entry.get("bytes")
        return "sha1:" + hashlib.sha1(data).hexdigest() if data else str(entry.get("path"))
    return entry
