"""Learning, not only running: SFT from scratch and DPO on `shapes` with the tiny model.

Numbers measured on a 2-core CPU are in the issue-3 report; the thresholds leave room for
machine-to-machine noise but fail if the model does not learn.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import compose, read_metrics

pytestmark = pytest.mark.slow


def answer_accuracy(model_dir: Path, data_dir: Path, split: str = "eval") -> float:
    """Greedy answers to every record of `split`, scored against its `solution`."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlexp.models.tiny import image_question_prompt

    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"  # batched generation
    records = [json.loads(line) for line in (data_dir / f"{split}.jsonl").read_text().splitlines()]
    prompts = [image_question_prompt(processor, r["prefix"]) for r in records]
    images = [Image.open(data_dir / r["image"]).convert("RGB") for r in records]
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    answers = [(re.findall(r"<answer>(.*?)</answer>", t) or [""])[-1].strip() for t in texts]
    return sum(a == r["solution"] for a, r in zip(answers, records, strict=True)) / len(records)


def read_split(data_dir: Path, split: str) -> list[dict]:
    return [json.loads(x) for x in (data_dir / f"{split}.jsonl").read_text().splitlines()]


def uniform_chance(data_dir: Path, split: str = "eval") -> float:
    """Guessing uniformly among each task's possible answers (5 counts, 4 colours)."""
    from vlexp.data.shapes import COLOURS

    options = {"count": 5, "colour": len(COLOURS)}
    records = read_split(data_dir, split)
    return sum(1 / options[r["task"]] for r in records) / len(records)


def majority_accuracy(data_dir: Path) -> float:
    """A stronger baseline: each task's most frequent training answer, always."""
    train, evaluation = read_split(data_dir, "train"), read_split(data_dir, "eval")
    best = {
        task: Counter(r["solution"] for r in train if r["task"] == task).most_common(1)[0][0]
        for task in {r["task"] for r in train}
    }
    return sum(best[r["task"]] == r["solution"] for r in evaluation) / len(evaluation)


def test_sft_from_scratch_learns_shapes(tmp_path, vlexp_cache):
    from vlexp.models import tiny
    from vlexp.recipe.run import train

    cold = tiny.build(tmp_path / "cold", warmup=False)  # random weights, no warm-up
    cfg = compose(
        [
            "algo=sft",
            f"model.name_or_path={cold}",
            "train.max_steps=120",
            "train.learning_rate=3e-3",
            "train.logging_steps=10",
            "train.save_steps=100000",
        ]
    )
    train(cfg, tmp_path / "run")
    losses = [row["loss"] for row in read_metrics(tmp_path / "run")]
    data_dir = Path(cfg.data.prepare.out_dir)
    accuracy = answer_accuracy(tmp_path / "run" / "final", data_dir)
    chance, majority = uniform_chance(data_dir), majority_accuracy(data_dir)
    print(
        f"SFT loss {losses[0]:.3f} -> {losses[-1]:.3f}; eval accuracy {accuracy:.3f} "
        f"(uniform chance {chance:.3f}, majority answer {majority:.3f})"
    )
    assert losses[-1] < 0.1 * losses[0]
    # Above guessing: the model answers in format with the answers' distribution learned.
    # (At this size and budget it does not beat always giving the majority answer.)
    assert accuracy > chance + 0.1


def test_dpo_margins_rise(tmp_path, tiny_model):
    from vlexp.recipe.run import train

    cfg = compose(
        [
            "algo=dpo",
            "train.max_steps=30",
            "train.learning_rate=1e-3",
            "train.logging_steps=5",
            "train.save_steps=100000",
        ]
    )
    train(cfg, tmp_path)
    rows = read_metrics(tmp_path)
    margins = [row["rewards/margins"] for row in rows]
    accuracies = [row["rewards/accuracies"] for row in rows]
    print("DPO margins", [round(m, 3) for m in margins], "accuracies", accuracies)
    half = len(margins) // 2
    late_margin = sum(margins[half:]) / len(margins[half:])
    late_accuracy = sum(accuracies[half:]) / len(accuracies[half:])
    # Measured: 0.14 over steps 1-5, ~0.5 over steps 16-30 (lr decays linearly to 0).
    assert late_margin > 2 * margins[0] and late_margin > 0.25
    assert late_accuracy > 0.5  # chosen ranked above rejected more often than a coin
