"""Batched generation for evaluation, through the same image path as TRL's GRPO trainer.

Prompts are the data set's conversational messages with the record's images put in by
`trl.data_utils.prepare_multimodal_messages`, then rendered and processed in one
`processor.apply_chat_template(..., tokenize=True)` call, as GRPOTrainer does: the same
processor, pixel limits and chat template in training, generation and evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlexp.config.algo import Algorithm
from vlexp.data import split_sources, to_dataset
from vlexp.data.check import DataCheck
from vlexp.data.spec import DataSpec
from vlexp.models.loading import resolve_path


@dataclass
class Completion:
    text: str
    ids: list[int]  # generated token ids up to and including the end-of-turn token
    clipped: bool  # hit max_new_tokens without an end-of-turn token
    # With an environment (env=, vlexp.evaluation.tools): each model and tool turn (the tool's
    # images in it) for the gallery, and the conversation the rewards score, as TRL's.
    turns: list[dict] | None = None
    messages: list[dict] | None = None


def completion_of(model, processor, ids: list[int]) -> Completion:
    """One generated turn (new token ids, padding included) as a `Completion`."""
    return _completion(ids, _end_ids(model, processor), processor.tokenizer)


def load_examples(
    spec: DataSpec, max_new_tokens: int, processor, limit: int | None = None
) -> list[dict]:
    """The eval split as GRPO-style examples (`prompt` messages, `images` as paths, columns).

    Runs the data set's `prepare` step, then the same record check as training
    (vlexp.data.check, honouring data.on_bad_record) for prompt records that must leave room
    for `max_new_tokens` (eval.max_new_tokens) and carry the columns the rewards need.
    `spec`: the run plan's data part (`vlexp.runplan`).
    """
    import dataclasses

    import datasets
    from hydra.utils import instantiate

    data_cfg = spec.node
    if not data_cfg.get("eval"):
        raise ValueError(
            f"data.eval is not set for data={data_cfg.get('name')}: evaluation needs an eval "
            "split, e.g. data.eval=/path/to/eval.jsonl"
        )
    if data_cfg.get("prepare") is not None:
        instantiate(data_cfg.prepare)
    # Evaluation generates from prompt records and scores with the rewards, whatever the
    # training algorithm was: its data check is the one of an algorithm that generates.
    as_prompts = Algorithm(
        name="",
        kind="grpo",
        generates=True,
        groups=False,
        reference="none",
        args={"max_completion_length": max_new_tokens},
        rewards=True,
    )
    # The processor may come from a LoRA run's final/ (no config.json): the context length
    # is the base model's.
    model_dir = resolve_path(spec.model_path)
    check = DataCheck(
        dataclasses.replace(spec, algorithm=as_prompts), processor, model_dir=model_dir
    )
    split = to_dataset(check(split_sources(data_cfg, ("eval",)))["eval"], "grpo", data_cfg)
    if "videos" in split.column_names:
        raise ValueError(
            f"{data_cfg.eval}: records with videos: generation-based evaluation reads images "
            "only; evaluate video data with your own script, or drop train.eval_steps"
        )
    # Paths, not decoded images: samples.jsonl records where each image came from.
    split = split.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    if limit is not None:
        split = split.select(range(min(int(limit), len(split))))
    examples = split.to_list()
    folder = spec.cache_dir / "eval-images"
    for ex in examples:
        ex["images"] = [image_file(img, folder) for img in ex["images"] or []]
    return examples


def image_file(entry: dict, folder: Path) -> str:
    """A path to the image of a data set entry (`{"bytes", "path"}`): its file, or, when the
    data set carries the image itself (parquet hub sets: bytes, `path` only a file name), the
    bytes written once under `folder`, named by their digest."""
    data = entry.get("bytes")
    if not data:
        return entry["path"]
    import hashlib

    suffix = Path(entry.get("path") or "").suffix.lower() or ".img"
    target = folder / f"{hashlib.sha1(data).hexdigest()}{suffix}"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, target)  # atomic: ranks writing the same image agree
    return str(target)


def open_images(paths: list[str]) -> list:
    """The images decoded as the training data set decodes them (`datasets.Image`: EXIF
    orientation applied), so evaluation sees the pixels training saw and that gold boxes were
    scaled from (`vlexp.data.boxes.decoded_size`)."""
    from vlexp.data.image_cache import decode

    return [decode(str(path)).convert("RGB") for path in paths]


def _end_ids(model, processor) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return set(ids) | {processor.tokenizer.eos_token_id}


def generate(
    model,
    processor,
    examples: list[dict],
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    repetition_penalty: float = 1.0,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "eval",
) -> list[list[Completion]]:
    """`num_samples` completions per example; temperature 0 is greedy decoding.

    Prompts are left-padded (whatever the tokenizer's own setting), so every row's
    generation starts right after its own prompt.
    """
    import torch
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    end_ids = _end_ids(model, processor)
    tokenizer = processor.tokenizer
    settings = decoding_settings(model, tokenizer, temperature, top_p, top_k, repetition_penalty)
    results: list[list[Completion]] = []
    bar = tqdm(total=len(examples), desc=desc, unit="prompt", disable=not progress, leave=False)
    try:
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            inputs = prompt_batch(processor, batch).to(device)
            with torch.no_grad():
                output = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=num_samples,
                    **settings,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()  # (B*n, T_new)
            rows = [_completion(row, end_ids, tokenizer) for row in new_tokens]
            results += [rows[i : i + num_samples] for i in range(0, len(rows), num_samples)]
            bar.update(len(batch))
    finally:
        bar.close()
    return results


def decoding_settings(
    model, tokenizer, temperature: float, top_p: float, top_k: int, repetition_penalty: float
) -> dict[str, Any]:
    """Every generation setting explicit, as GRPOTrainer does: otherwise the checkpoint's own
    generation_config fills the gaps (Qwen2-VL-Instruct, for one, ships top_k=1 and
    repetition_penalty=1.05: "sampling" would be greedy and greedy would be penalised)."""
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k}
        if temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    sampling["repetition_penalty"] = repetition_penalty
    sampling["pad_token_id"] = tokenizer.pad_token_id
    image_token = getattr(model.config, "image_token_id", None)
    if image_token is not None:  # a sampled image token would not match any image features
        sampling["suppress_tokens"] = [image_token]
    return sampling


def prompt_batch(processor, batch: list[dict]) -> Any:
    """The batch's prompts with their images through the processor's chat template,
    left-padded (whatever the tokenizer's own setting)."""
    from trl.data_utils import prepare_multimodal_messages

    conversations = [
        prepare_multimodal_messages(ex["prompt"], images=open_images(ex["images"])) for ex in batch
    ]
    return processor.apply_chat_template(
        conversation=conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True, "padding_side": "left"},
    )


def _completion(row: list[int], end_ids: set[int], tokenizer) -> Completion:
    # Rows that finished early are padded with the pad token, which may itself be an end
    # token (Qwen pads with <|endoftext|>): the first end token marks the real length.
    end = next((i for i, tok in enumerate(row) if tok in end_ids), None)
    ids = row if end is None else row[: end + 1]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return Completion(text=text, ids=ids, clipped=end is None)
