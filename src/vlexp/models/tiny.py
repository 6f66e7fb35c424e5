"""Build, warm up and cache a tiny model of a family: the real architecture at toy size.

The model keeps everything a real checkpoint has (for `tiny://qwen2_5_vl`: vision tower with
patch 14 / merge 2 / temporal patch 2, M-RoPE, the Qwen2.5-VL chat template, a
`Qwen2_5_VLProcessor`), so the code paths vlexp exercises on it are the ones a 7B model
takes. Only the sizes shrink: the family's tiny builder (`vlexp.families`, field `tiny`) sets
them, and a byte-level BPE is trained here on the `shapes` texts with the family's special
tokens.

A randomly initialised model never emits EOS, so every GRPO reward would be 0 and the loss
exactly 0. The build therefore ends with a short, deterministic SFT warm-up on `shapes`
answers in the think/answer format: enough for the format to appear in some samples, not
enough to saturate it, so GRPO starts with reward variance and has room to improve.

    python -m vlexp.models.tiny /tmp/tiny [NAME]   # build into a directory (normally automatic)
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from filelock import FileLock

from vlexp import families
from vlexp.data import shapes
from vlexp.data.shapes import COLOURS, KINDS
from vlexp.models import tool_warmup
from vlexp.paths import cache_dir, cache_problem, write_manifest

log = logging.getLogger("vlexp")

VERSION = 1  # bump when the architecture, tokenizer or warm-up changes: it names the cache dir
VOCAB_SIZE = 640
SYSTEM_PROMPT = "You are a helpful assistant."
WARMUP = dict(steps=60, batch_size=8, learning_rate=3e-3, num_records=256)


def default_path(name: str = "qwen2_5_vl") -> Path:
    return cache_dir() / "models" / f"tiny-{name}-v{VERSION}"


# What a usable entry has, whoever built it: the model (config and weights), the processor
# and the build's own record. The cache check rejects an entry without one of them.
REQUIRED_FILES = ("config.json", "model.safetensors", "processor_config.json", "vlexp_tiny.json")


def ensure(name: str = "qwen2_5_vl") -> Path:
    """Return the cached tiny model directory, building it the first time (rank-safe)."""
    families.of_tiny(name)  # an unknown name fails here, before any lock or build
    path = default_path(name)
    if path.is_dir() and cache_problem(path, REQUIRED_FILES) is None:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        problem = cache_problem(path, REQUIRED_FILES) if path.exists() else "absent"
        if problem != "absent" and problem is not None:
            # Truncated weights or a lost tokenizer.json otherwise surface as raw tracebacks.
            log.warning("tiny model cache %s is damaged (%s); rebuilding it", path, problem)
            shutil.rmtree(path)
        if problem is not None:
            staging = path.with_name(path.name + ".building")
            shutil.rmtree(staging, ignore_errors=True)
            build_whole(staging, name)
            write_manifest(staging, REQUIRED_FILES)
            staging.rename(path)
    return path


def build_whole(out_dir: Path, name: str) -> None:
    """`build` in a fresh process that is no rank of anything.

    Whichever rank of a multi-process run wins the lock builds. In-process, transformers'
    `save_pretrained` writes the config and weights only on torch.distributed rank 0, so a
    build on rank 1 left an entry with a processor and no model; and under a live ZeRO-3
    config `from_config` would partition the model being built, a collective the ranks
    waiting on this lock never join. A child without the launcher's variables has neither.
    """
    import os
    import subprocess

    env = {key: value for key, value in os.environ.items() if not _launcher_variable(key)}
    command = [sys.executable, "-m", "vlexp.models.tiny", str(out_dir), name]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"building the tiny model tiny://{name} into {out_dir} failed:\n"
            + (result.stderr or result.stdout)[-4000:]
        )


_LAUNCHER_VARIABLES = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK"}


def _launcher_variable(key: str) -> bool:
    """Variables through which torchrun, accelerate and DeepSpeed make a process a rank."""
    return (
        key in _LAUNCHER_VARIABLES
        or key.startswith(("MASTER_", "ACCELERATE_", "TORCHELASTIC_", "ROLE_", "CROSS_"))
        or key.startswith("OMPI_COMM_WORLD")
    )


def training_corpus(records: list[dict]) -> list[str]:
    """Texts the BPE learns from: chat scaffolding plus every shapes prompt and answer."""

    scaffold = [f"system\n{SYSTEM_PROMPT}\nuser\nassistant\n"]
    words = [" ".join(COLOURS), " ".join(KINDS), "0 1 2 3 4 5 6 7 8 9"]
    texts = [r["prefix"] + " " + r["suffix"] for r in records]
    return scaffold * 20 + words * 20 + texts


def build_tokenizer(
    records: list[dict], special_tokens: tuple[str, ...], extra: list[str] | None = None
):
    """Train a byte-level BPE with the family's special tokens, wrapped as a Qwen2Tokenizer
    (`extra`: more texts to learn, with a larger vocabulary: the `+tools` variant)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if extra:  # words, not GPT-2's letter/punctuation pieces (vlexp.models.tool_warmup)
        bpe.pre_tokenizer = tool_warmup.pre_tokenizer()
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=tool_warmup.VOCAB_SIZE if extra else VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(training_corpus(records) + (extra or []), trainer=trainer)
    # Qwen2Tokenizer sets its own GPT-2 pre-tokenizer again when it is loaded, so the
    # variant's word split lives in a plain fast tokenizer (tokenizer.json kept as built).
    kind = PreTrainedTokenizerFast if extra else Qwen2Tokenizer
    tokenizer = kind(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        **({} if extra else {"errors": "replace"}),
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    return tokenizer


def image_question_prompt(processor, question: str) -> str:
    """The chat text of one user turn (an image, then `question`), ready for the answer."""
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    return processor.apply_chat_template([message], add_generation_prompt=True, tokenize=False)


def turn_end(processor) -> str:
    """What the chat template writes after an assistant answer (`<|im_end|>\\n` for Qwen)."""
    marker = "\u2063answer\u2063"
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {"role": "assistant", "content": [{"type": "text", "text": marker}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    return text[text.rindex(marker) + len(marker) :]


def warm_up(model, processor, records: list[dict], image_dir: Path, seed: int) -> list[float]:
    """A few SFT steps on think/answer targets; loss on the answer tokens only."""
    import torch
    from PIL import Image

    # A template that writes nothing after an answer (GLM-4.1V's: the next role tag ends a
    # turn) gets the tokenizer's end token, one of the model's generation stops, so the
    # warmed tiny learns to stop as the real model does.
    end = turn_end(processor) or processor.tokenizer.eos_token
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=WARMUP["learning_rate"])
    model.train()
    losses = []
    batch_size = WARMUP["batch_size"]
    for step in range(WARMUP["steps"]):
        start = (step * batch_size) % len(records)
        batch = records[start : start + batch_size]
        images = [Image.open(image_dir / r["image"]).convert("RGB") for r in batch]
        prompts = [image_question_prompt(processor, r["prefix"]) for r in batch]
        full = [p + r["suffix"] + end for p, r in zip(prompts, batch, strict=True)]
        images = [[image] for image in images]  # one list per text (Gemma 3 insists)
        inputs = processor(text=full, images=images, return_tensors="pt", padding=True)
        # Lists said outright: MiniCPM-V's processor returns tensors by default.
        unpadded = processor(text=prompts, images=images, padding=False, return_tensors=None)
        prompt_lens = [len(ids) for ids in unpadded["input_ids"]]
        labels = inputs["input_ids"].clone()  # (B, T), right-padded
        for row, n in enumerate(prompt_lens):
            labels[row, :n] = -100
        labels[inputs["attention_mask"] == 0] = -100
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(loss.item(), 4))
    model.eval()
    return losses


def build(
    out_dir: str | Path, seed: int = 0, warmup: bool = True, name: str = "qwen2_5_vl"
) -> Path:
    """Build the tokenizer, processor and model of `tiny://name`, warm it up, save to `out_dir`.

    `name` is a family (`qwen2_5_vl`) or a family with a variant (`qwen2_5_vl+tools`: the
    tool-use warm-up of vlexp.models.tool_warmup follows the plain one; its own cache entry)."""
    import torch

    out = Path(out_dir)
    data_dir = shapes.generate(shapes.default_dir(512, 64, 0), num_train=512, num_eval=64, seed=0)
    records = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    family = families.of_tiny(name)
    tools = families.tiny_variant(name) == tool_warmup.VARIANT
    tokenizer = _tokenizer(family, records)
    if tools:  # the variant's BPE also learns the zoom conversations (rendered by the plain one)
        processor, _ = family.load("tiny")(tokenizer, seed)
        tokenizer = _tokenizer(family, records, tool_warmup.corpus_texts(family, processor))
    processor, model = family.load("tiny")(tokenizer, seed)
    losses, tool_losses = [], []
    if warmup:
        # One thread: the same seed then gives the same bytes on any machine size.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            losses = warm_up(model, processor, records[: WARMUP["num_records"]], data_dir, seed)
            if tools:
                tool_losses = tool_warmup.tool_warm_up(model, processor, family, seed)
        finally:
            torch.set_num_threads(threads)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    meta = {
        "version": VERSION,
        "family": name,
        "seed": seed,
        "warmup": WARMUP if warmup else None,
        "losses": losses,
    }
    if tools:
        meta.update(
            tool_warmup=tool_warmup.TOOL_WARMUP if warmup else None, tool_losses=tool_losses
        )
    (out / "vlexp_tiny.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _tokenizer(family: Any, records: list[dict], extra: list[str] | None = None) -> Any:
    """The family's tiny tokenizer, trained on the shapes texts (and `extra`, if any)."""
    if family.tiny_tokenizer:
        corpus = training_corpus(records) + (extra or [])
        size = tool_warmup.VOCAB_SIZE if extra else VOCAB_SIZE
        return family.load("tiny_tokenizer")(corpus, family.special_tokens, size)
    return build_tokenizer(records, family.special_tokens, extra)


def main(argv: list[str]) -> None:
    """`python -m vlexp.models.tiny [DIR [NAME]]`: build into DIR, or ensure the cached build."""
    usage = "python -m vlexp.models.tiny [DIR [NAME]]"
    if len(argv) > 2 or any("=" in arg or arg.startswith("-") for arg in argv):
        raise SystemExit(f"vlexp.models.tiny: {' '.join(argv)}: takes no overrides; usage: {usage}")
    try:
        target = Path(argv[0]) if argv else ensure()
        if argv:
            build(target, name=argv[1] if len(argv) > 1 else "qwen2_5_vl")
    except families.UnknownFamily as err:
        raise SystemExit(f"vlexp.models.tiny: {err}") from None
    print(target)


if __name__ == "__main__":
    main(sys.argv[1:])
