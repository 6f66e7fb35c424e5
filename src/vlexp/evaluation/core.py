"""One evaluation: generate for the eval records, score, summarise, write the eval dir.

Shared by `python -m vlexp.evaluate` and the in-training callback (`train.eval_steps`), so a
number logged during training and one measured afterwards mean the same thing.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

from vlexp.config import reward as reward_config
from vlexp.data.messages import prompt_text
from vlexp.evaluation.gallery import write_html
from vlexp.evaluation.generation import generate
from vlexp.evaluation.scoring import annotate, score, summarise
from vlexp.evaluation.tools import generate_with_tools
from vlexp.rewards.guard import guarded, processor_box_frame


def build_rewards(
    reward_cfg: Any, box_frame: Any = None, data_cfg: Any = None
) -> tuple[dict[str, Any], dict[str, float]]:
    """Reward functions (guarded: `reward.on_error` applies as in training; box rewards read
    the model's `box_frame` unless `data_cfg.boxes.gold` put the gold boxes in it) and
    weights."""
    rewards = reward_config.of({"reward": reward_cfg, "data": data_cfg})
    return guarded(rewards, box_frame), rewards.weights


def decoding(eval_cfg: Any) -> dict[str, Any]:
    """The decoding settings that define an evaluation (recorded in metrics.json)."""
    keys = ("max_new_tokens", "num_samples", "temperature", "top_p", "top_k", "repetition_penalty")
    return {k: eval_cfg[k] for k in keys if k in eval_cfg}


def check(eval_cfg: Any) -> None:
    """Reject settings that cannot mean what they say, before any model is loaded."""
    if eval_cfg.num_samples > 1 and eval_cfg.temperature <= 0:
        raise ValueError(
            f"eval.num_samples={eval_cfg.num_samples} with eval.temperature="
            f"{eval_cfg.temperature}: greedy decoding gives the same completion every time; "
            "set eval.temperature>0 (e.g. eval=pass_at_k) or eval.num_samples=1"
        )


def evaluate(
    model,
    processor,
    examples: list[dict],
    eval_cfg: Any,
    reward_cfg: Any,
    *,
    accelerator=None,
    progress: bool = True,
    desc: str = "eval",
    data_cfg: Any = None,
    agent: Any = None,
) -> tuple[dict[str, Any], list[dict]]:
    """Generate, score and summarise; returns (metrics, samples) on every process.

    With an `accelerator` of several processes each rank generates a strided share of the
    records (padded to equal length, so ZeRO-3's collective forward passes line up) and the
    samples are gathered before the summary. `data_cfg`: the config the examples were
    loaded with (`data.boxes.gold` says which frame their gold boxes are in). `agent`: the
    run's environment (`vlexp.evaluation.tools.Agent`): each sample is then a rollout with
    tool calls, scored as a whole and shown turn by turn.
    """
    started = time.perf_counter()
    funcs, weights = build_rewards(reward_cfg, processor_box_frame(model, processor), data_cfg)
    world = accelerator.num_processes if accelerator is not None else 1
    indexed = rank_share(list(enumerate(examples)), accelerator)
    run = generate if agent is None else functools.partial(generate_with_tools, agent=agent)
    completions = run(
        model,
        processor,
        [ex for _, ex in indexed],
        max_new_tokens=eval_cfg.max_new_tokens,
        num_samples=eval_cfg.num_samples,
        temperature=eval_cfg.temperature,
        top_p=eval_cfg.top_p,
        top_k=eval_cfg.get("top_k", 0),
        repetition_penalty=eval_cfg.get("repetition_penalty", 1.0),
        batch_size=eval_cfg.batch_size,
        progress=progress,
        desc=desc,
    )
    pairs = zip(indexed, completions, strict=True)
    rows = [(i, ex, j, c) for (i, ex), cs in pairs for j, c in enumerate(cs)]  # one per completion
    samples = scored_samples(rows, funcs, weights)
    if world > 1:
        from accelerate.utils import gather_object

        unique = {(s["index"], s["sample"]): s for s in gather_object(samples)}
        samples = [unique[key] for key in sorted(unique)]
    metrics = summarise(samples, eval_cfg.num_samples)
    metrics["runtime_s"] = round(time.perf_counter() - started, 3)
    return metrics, samples


def rank_share(indexed: list[tuple[int, dict]], accelerator: Any) -> list[tuple[int, dict]]:
    """This process's strided share of the (index, example) pairs, padded with its last one
    to the longest share (ZeRO-3's collective forward passes line up; duplicates are dropped
    after the gather); all of them on a single process."""
    world = accelerator.num_processes if accelerator is not None else 1
    if world <= 1:
        return indexed
    share = indexed[accelerator.process_index :: world]
    share += share[-1:] * (math.ceil(len(indexed) / world) - len(share))  # pad, drop later
    return share


def scored_samples(rows: list[tuple], funcs: dict[str, Any], weights: dict[str, float]) -> list:
    """One sample per (index, example, sample number, completion) row, with its rewards."""
    # TRL hands rewards conversational completions for conversational prompts: do the same.
    # With tools, the whole conversation after the prompt, as TRL scores it.
    as_messages = [c.messages or [{"role": "assistant", "content": c.text}] for *_, c in rows]
    rewards = score(
        prompts=[ex["prompt"] for _, ex, _, _ in rows],
        completions=as_messages,
        completion_ids=[c.ids for _, _, _, c in rows],
        examples=[ex for _, ex, _, _ in rows],
        reward_funcs=funcs,
    )
    return [
        annotate(
            {
                "index": i,
                "sample": j,
                "id": ex.get("id"),
                "prompt": prompt_text(ex["prompt"]),
                "images": ex["images"],
                "solution": None if ex.get("solution") is None else str(ex["solution"]),
                "completion": c.text,
                "length": len(c.ids),
                "clipped": c.clipped,
                "rewards": r,
                **({"turns": c.turns} if c.turns else {}),
            },
            weights,
        )
        for (i, ex, j, c), r in zip(rows, rewards, strict=True)
    ]


def _finite(value: Any) -> Any:
    # NaN is not JSON: an inapplicable reward is written as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def write_outputs(
    out_dir: Path,
    metrics: dict[str, Any],
    samples: list[dict],
    meta: dict[str, Any],
    gallery_cfg: Any,
) -> Path:
    """metrics.json (metrics + what was evaluated), samples.jsonl and samples.html."""

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _finite({**metrics, **meta})
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    samples = [tool_images_saved(s, out_dir / "tool_images") for s in samples]
    with (out_dir / "samples.jsonl").open("w", encoding="utf-8") as handle:
        for sample in samples:
            handle.write(json.dumps(_finite(sample)) + "\n")
    write_html(out_dir / "samples.html", record, samples, gallery_cfg)
    return out_dir


def tool_images_saved(sample: dict, folder: Path) -> dict:
    """`sample` with the images its tool turns returned written to `folder` as PNG files and
    named by their paths (samples.jsonl stays JSON, the gallery shows them)."""
    if not sample.get("turns"):
        return sample
    turns = []
    for number, turn in enumerate(sample["turns"]):
        paths = []
        for k, image in enumerate(turn.get("images") or []):
            if not isinstance(image, str):
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{sample['index']}-{sample['sample']}-{number}-{k}.png"
                image.save(folder / name)
                image = str(folder / name)
            paths.append(image)
        turns.append({**turn, "images": paths} if "images" in turn else turn)
    return {**sample, "turns": turns}
