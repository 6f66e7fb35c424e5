"""The sample gallery: a static `samples.html` (images embedded) and the same as a W&B table.

The HTML needs no server and no network: every image is a base64 thumbnail inside the file,
so it opens from any copy of the run dir (`eval.gallery.max_prompts` bounds its size).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px;margin:0 0 4px} .meta{color:#666;margin-bottom:12px}
table.metrics{border-collapse:collapse;margin-bottom:20px;background:#fff}
table.metrics td{border:1px solid #ddd;padding:3px 10px} table.metrics td:first-child{color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;display:flex;gap:10px}
.card img{width:128px;height:auto;image-rendering:pixelated;border:1px solid #eee;align-self:flex-start}
.body{flex:1;min-width:0} .q{font-weight:600} .sol{color:#555;margin:2px 0 6px}
pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:6px;margin:4px 0;font-size:12px}
.chip{display:inline-block;border-radius:10px;padding:0 7px;margin:0 4px 2px 0;font-size:12px;background:#eee}
.turn{margin:4px 0;font-size:12px;color:#555} .turn.tool{border-left:3px solid #9ab;padding-left:6px}
.turn img{width:96px;display:block;margin:3px 0}
.ok{background:#d7f5dc;color:#11651f} .bad{background:#fadadd;color:#8a1220} .missing{color:#a00}
"""


def thumbnail_uri(path: str, max_side: int) -> str | None:
    """A `data:` URI of the image shrunk to `max_side` px, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except OSError:
        return None
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    # Flat synthetic images compress best as PNG, photographs as JPEG.
    small = image.width * image.height <= 256 * 256
    image.save(buffer, format="PNG" if small else "JPEG", quality=85)
    kind = "png" if small else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}".rstrip("0").rstrip(".")
    return "n/a" if value is None else str(value)


def _chips(sample: dict) -> str:
    chips = []
    if sample["correct"] is not None:
        cls, word = ("ok", "correct") if sample["correct"] else ("bad", "wrong")
        chips.append(f'<span class="chip {cls}">{word}</span>')
        if sample["correct"] and sample.get("exact_match") is False:
            # Right by the accuracy reward (math-verify), not character for character.
            chips.append('<span class="chip">not an exact match</span>')
    chips.append(f'<span class="chip">reward {_fmt(sample["reward"])}</span>')
    chips += [
        f'<span class="chip">{html.escape(name)} {_fmt(value)}</span>'
        for name, value in sample["rewards"].items()
    ]
    clipped = " (clipped)" if sample["clipped"] else ""
    chips.append(f'<span class="chip">{sample["length"]} tokens{clipped}</span>')
    return "".join(chips)


def _card(group: list[dict], max_side: int) -> str:
    first = group[0]
    images = []
    for path in first["images"]:
        uri = thumbnail_uri(path, max_side)
        alt = html.escape(Path(path).name)
        images.append(
            f'<img src="{uri}" alt="{alt}" title="{html.escape(path)}">'
            if uri
            else f'<div class="missing">image not found: {html.escape(path)}</div>'
        )
    solution = first.get("solution")
    answers = "".join(f"{_trajectory(s, max_side)}<div>{_chips(s)}</div>" for s in group)
    label = html.escape(str(first.get("id") or f"#{first['index']}"))
    return (
        f'<div class="card">{"".join(images)}<div class="body">'
        f'<div class="q">{html.escape(first["prompt"])}</div>'
        f'<div class="sol">{label} · solution: {html.escape(_fmt(solution))}</div>'
        f"{answers}</div></div>"
    )


def _trajectory(sample: dict, max_side: int) -> str:
    """The completion; with tools (env=), each turn in order: the model's text, then each
    tool result with the images it returned."""
    if not sample.get("turns"):
        return f"<pre>{html.escape(sample['completion']) or '(empty)'}</pre>"
    blocks = []
    for number, turn in enumerate(sample["turns"], start=1):
        if turn["role"] == "assistant":
            body = f"<pre>{html.escape(turn['text']) or '(empty)'}</pre>"
            blocks.append(f'<div class="turn">turn {number} · model{body}</div>')
            continue
        images = "".join(
            f'<img src="{uri}" alt="{html.escape(Path(path).name)}">'
            if (uri := thumbnail_uri(path, max_side))
            else f'<div class="missing">image not found: {html.escape(path)}</div>'
            for path in turn.get("images") or []
        )
        text = f"<pre>{html.escape(turn['text'])}</pre>" if turn.get("text") else ""
        name = html.escape(str(turn.get("name", "tool")))
        blocks.append(f'<div class="turn tool">turn {number} · {name}{text}{images}</div>')
    return "".join(blocks)


def group_by_prompt(samples: list[dict], max_prompts: int | None) -> list[list[dict]]:
    groups: dict[int, list[dict]] = {}
    for sample in samples:
        groups.setdefault(sample["index"], []).append(sample)
    ordered = [groups[i] for i in sorted(groups)]
    return ordered if max_prompts is None else ordered[: int(max_prompts)]


def write_html(path: Path, record: dict, samples: list[dict], gallery_cfg: Any) -> Path:
    """Write the gallery: a metrics table, then one card per prompt with all its completions."""
    groups = group_by_prompt(samples, gallery_cfg.get("max_prompts"))
    max_side = int(gallery_cfg.get("image_max_side", 256))
    numbers = [(k, v) for k, v in record.items() if isinstance(v, int | float) and k != "step"]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in numbers)
    settings = " ".join(f"{k}={v}" for k, v in (record.get("decoding") or {}).items())
    title = html.escape(str(record.get("model", "evaluation")))
    subtitle = " · ".join(
        html.escape(f"{k}: {record[k]}") for k in ("run", "step", "data") if record.get(k)
    )
    shown = f"showing {len(groups)} of {record.get('num_prompts', len(groups))} prompts"
    page = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>vlexp eval: {title}</title>'
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
        f'<div class="meta">{subtitle}<br>{html.escape(settings)} · {shown}</div>'
        f'<table class="metrics">{rows}</table>'
        f'<div class="grid">{"".join(_card(g, max_side) for g in groups)}</div></body></html>'
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def wandb_table(samples: list[dict], gallery_cfg: Any):
    """The gallery as a `wandb.Table` (one row per completion, the first image as wandb.Image)."""
    import wandb
    from PIL import Image

    groups = group_by_prompt(samples, gallery_cfg.get("max_prompts"))
    names = list(samples[0]["rewards"]) if samples else []
    columns = ["id", "image", "prompt", "solution", "completion", "correct", "exact_match"]
    columns += ["reward", *names]
    table = wandb.Table(columns=columns)
    max_side = int(gallery_cfg.get("image_max_side", 256))
    for group in groups:
        image = None
        if group[0]["images"]:
            try:
                with Image.open(group[0]["images"][0]) as source:
                    thumb = source.convert("RGB")
                thumb.thumbnail((max_side, max_side))
                image = wandb.Image(thumb)
            except OSError:
                image = None
        for s in group:
            label = s.get("id") or f"#{s['index']}"
            rewards = [s["rewards"][n] for n in names]
            table.add_data(
                label, image, s["prompt"], s["solution"], s["completion"], s["correct"],
                s.get("exact_match"), s["reward"], *rewards,
            )  # fmt: skip
    return table
