"""The baseline for bench/overhead.py: vlexp's default job written by hand against TRL.

    python bench/plain_trl.py --algo grpo --steps 20 --out /tmp/plain-run

Builds what `python -m vlexp algo=<algo> data.image_cache=false train.max_steps=<steps>`
builds, with no Hydra and no vlexp glue: the same cached tiny model and processor (pixel
budget and left padding as vlexp sets them), the same `shapes` JSONL turned into the same
conversational rows, the same reward functions and the same TRL config values (those in
conf/config.yaml and conf/algo/*.yaml), then trains and saves model + processor. The reward
functions are imported from vlexp.rewards: they are the job's definition, not glue.
Writes <out>/plain_result.json with TRL's train_runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

CACHE = Path(os.environ.get("VLEXP_CACHE", Path.home() / ".cache" / "vlexp")).expanduser()
MODEL = CACHE / "models" / "tiny-qwen2_5_vl-v1"
DATA = CACHE / "data" / "shapes-v1-n512-e64-s0"
SHARED = dict(  # conf/config.yaml `train:` as vlexp resolves it on a CPU machine
    num_train_epochs=1,
    learning_rate=1.0e-3,
    per_device_train_batch_size=8,
    gradient_accumulation_steps=1,
    logging_steps=1,
    save_steps=500,
    seed=42,
    bf16=False,
    use_cpu=not torch.cuda.is_available(),
    report_to=[],
    logging_nan_inf_filter=False,
    gradient_checkpointing=False,
    remove_unused_columns=False,
)


def rows(path: Path, algo: str) -> datasets.Dataset:
    table = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        prompt = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": record["prefix"]}],
            }
        ]
        images = [str(path.parent / record["image"])]
        if algo == "sft":
            completion = [
                {"role": "assistant", "content": [{"type": "text", "text": record["suffix"]}]}
            ]
            table.append({"prompt": prompt, "completion": completion, "images": images})
        else:
            keep = {
                k: json.dumps(v) if isinstance(v, dict | list) else v
                for k, v in record.items()
                if k not in ("prefix", "image", "suffix", "rejected")
            }
            table.append({**keep, "prompt": prompt, "images": images})
    columns = {key: [row.get(key) for row in table] for key in table[0]}
    dataset = datasets.Dataset.from_dict(columns)
    return dataset.cast_column("images", datasets.Sequence(datasets.Image()))


def vision_placeholders(config) -> list[int]:
    """Qwen2.5-VL's vision placeholder tokens, kept out of sampling as vlexp does."""
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return sorted(getattr(config, name) for name in names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--algo", choices=("grpo", "sft"), default="grpo")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", required=True)
    opts = parser.parse_args()
    out = Path(opts.out)

    processor = AutoProcessor.from_pretrained(MODEL)
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12544}
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(
        MODEL, dtype=torch.float32, attn_implementation="sdpa"
    )
    train_set = rows(DATA / "train.jsonl", opts.algo)
    eval_set = rows(DATA / "eval.jsonl", opts.algo)

    if opts.algo == "grpo":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from vlexp.rewards import accuracy, think_format

        args = GRPOConfig(
            output_dir=str(out),
            max_steps=opts.steps,
            loss_type="grpo",
            beta=0.04,
            num_generations=4,
            max_completion_length=32,
            temperature=1.0,
            top_p=1.0,
            scale_rewards="group",
            epsilon=0.2,
            num_iterations=1,
            log_completions=False,
            reward_weights=[1.0, 1.0],
            epsilon_high=0.2,
            use_bias_correction_kl=False,
            generation_kwargs={"suppress_tokens": vision_placeholders(model.config)},
            **SHARED,
        )
        trainer = GRPOTrainer(
            model=model,
            args=args,
            reward_funcs=[think_format, accuracy],
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=processor,
        )
    else:
        args = SFTConfig(
            output_dir=str(out),
            max_steps=opts.steps,
            completion_only_loss=True,
            max_length=None,
            **SHARED,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=processor,
        )
    result = trainer.train()
    trainer.save_model(str(out / "final"))
    processor.save_pretrained(str(out / "final"))
    (out / "plain_result.json").write_text(json.dumps(result.metrics) + "\n")


if __name__ == "__main__":
    main()
