"""What the data check tells the user: the per-split summary and RUN_DIR/bad_records.jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from vlexp.data.formats import FORMATS
from vlexp.data.records import BadRecord


def line_number(bad: BadRecord) -> int:
    """The line of a `file:line` source, for sorting (0 for other sources)."""
    tail = bad.source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def percentiles(values: list[int]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p50 {pick(0.5)}, p90 {pick(0.9)}, p99 {pick(0.99)}, max {ordered[-1]}"


def summary_line(split: str, stats: dict) -> str:
    dropped = stats["dropped"]
    total = sum(dropped.values())
    reasons = ", ".join(f"{reason}: {n}" for reason, n in dropped.most_common())
    lines = [
        f"data check {split}: {stats['read']} read, {stats['read'] - total} kept, "
        f"{total} bad" + (f" ({reasons})" if reasons else ""),
        f"  images decoded and measured for {stats['checked']} records; image tokens per "
        f"record: {percentiles(stats['image_tokens'])}; prompt tokens: "
        f"{percentiles(stats['prompt_tokens'])}",
    ]
    if stats.get("video_tokens"):
        lines.append(
            f"  videos read and sampled for {len(stats['video_tokens'])} records; video tokens "
            f"per record: {percentiles(stats['video_tokens'])}"
        )
    for (source, name), count in sorted(stats.get("formats", {}).items()):
        label = FORMATS[name].label if name in FORMATS else name
        lines.append(f"  format: {label}: {source} ({count} records)")
    if stats.get("formats") and not stats.get("with_media"):
        lines.append(
            "  warning: no record of this split has an image or a video: the model trains on "
            "text alone (is the image column named image, images or image_path? data.columns "
            "renames it)"
        )
    if stats["truncated"]:
        lines.append(
            f"  {stats['truncated']} completions will be truncated to algo.args.max_length"
        )
    return "\n".join(lines)


def write_bad_records(path: Path, bad: list[tuple[str, BadRecord]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for split, record in bad:
            handle.write(json.dumps({"split": split, **asdict(record)}) + "\n")
