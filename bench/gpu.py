"""The real command on a GPU: `python -m vlexp` on random-weight Qwen-VL checkpoints.

    python bench/gpu.py                           # Qwen2.5-VL 3B and 7B, at most --budget s
    python bench/gpu.py --plan qwen3              # Qwen3-VL-8B and Qwen3-VL-30B-A3B (issue 16)
    python bench/gpu.py --runs 3b:grpo_ckpt 3b:sft_full 7b:sft_lora
    python bench/gpu.py --plan rollout            # rollout=hf vs hf_fast side by side (issue 27)
    python bench/gpu.py --smoke-cpu               # the same code on CPU at toy sizes (tested)
    python bench/gpu.py --smoke-cpu --plan rollout

Nothing is downloaded. For each model the bench writes a random-weight checkpoint of the
config.json bundled with vlexp (its special-token ids moved to the tiny tokenizer's of the
same family, `vocab_size` kept so the LM head costs what the real one does; bf16, with the
tiny processor of the family). The weights file is written tensor by tensor; the experts of
a mixture-of-experts model are left as holes of the file (zeros that take no disk: 30B-A3B's
62 GB of weights fit a 64 GB disk, and load through the same `from_pretrained`). Zero experts
cost the same FLOPs and memory as trained ones; the router is random, so tokens still spread
over the experts. It then writes a JSONL data set of random-noise images and text of the sizes below, and
runs each case as its own `python -m vlexp` process with its own timeout. From every run it
reads back the perf/* and timing_s/* metrics the run logged (vlexp.recipe.perf), samples the
card's used memory with nvidia-smi, and sets the planner's estimate (vlexp.plan, same
overrides, same token counts) next to the measured peak.

Cases (steps: the first is warm-up and not counted):
    sft_full    SFT, full fine-tuning, 896x896 images (1,024 image tokens) + ~256 text tokens
    sft_lora    the same with memory=lora
    dpo_lora    DPO with memory=lora, the SFT rows plus a rejected answer
    grpo        GRPO, 2 prompts x 8 completions of 256 tokens per step, beta 0.04, the prompt
                a 224x224 image (256 tokens at min_pixels) + a short question: the run of the
                issue that measured 124.6 GiB; EOS is suppressed so no completion stops early
    grpo_ckpt   the same with memory=grad_ckpt
    grpo_liger  the same with memory=[grad_ckpt,liger] (liger-kernel installed only)
    grpo_lora_ckpt  the same with memory=[lora,grad_ckpt] (the 7B case)
    grpo_fast   the same with speed=rl_gpu (checkpointing + Liger + static KV cache)
    (these GRPO cases pin rollout=hf: plain HF generate, comparable with earlier results)
    <case>_hf, <case>_hf_fast  (--plan rollout, issue 27) the same run under rollout=hf and
                rollout=hf_fast: grpo_ckpt (3B full weights), grpo_lora_ckpt (Qwen3-VL-8B),
                and their _big versions: 8 prompts x 8 completions x 512 tokens per step,
                the update in micro-batches of 16 rows; a second table compares the engines
A case the planner prices above the card's memory is not started (recorded as skipped): it
would only run out of memory. An out-of-memory, a crash or a timeout ends that case only.

Results: bench/results/gpu-<gpu>-<host>-<UTC time>.json (every run kept, so progress shows)
and the same numbers as a Markdown table (.md beside it, printed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO), str(REPO / "bench")]

from machine import describe  # noqa: E402

MODELS = {
    "3b": "Qwen/Qwen2.5-VL-3B-Instruct",
    "7b": "Qwen/Qwen2.5-VL-7B-Instruct",
    "q3_8b": "Qwen/Qwen3-VL-8B-Instruct",
    "q3_30b_a3b": "Qwen/Qwen3-VL-30B-A3B-Instruct",
}
# The model= option each size runs under (pixel budget, dtype, freeze_vision: the real ones);
# only model.name_or_path is swapped for the random-weight checkpoint.
MODEL_OPTIONS = {
    "3b": "qwen2_5_vl_3b",
    "7b": "qwen2_5_vl_7b",
    "q3_8b": "qwen3_vl_8b",
    "q3_30b_a3b": "qwen3_vl_30b_a3b",
    "smoke": "tiny",
    "smoke_moe": "tiny_qwen3_vl_moe",
}
GIB = 1024**3


@dataclass
class Sizes:
    """Data and step sizes of one bench run (the GPU defaults; `smoke()` shrinks them)."""

    sft_image: int = 896  # px side: 1,024 image tokens at Qwen2.5-VL's 28 px per token
    sft_text: int = 256  # text tokens per SFT/DPO row (prompt + answer)
    sft_batch: int = 2  # full fine-tuning: ~62 GiB planned on 3B, fits an 80 GB card
    lora_batch: int = 4
    dpo_batch: int = 2
    sft_steps: int = 6
    grpo_image: int = 224  # raised to min_pixels: 256 image tokens
    grpo_text: int = 48  # question tokens
    prompts: int = 2
    generations: int = 8
    completion: int = 256
    grpo_steps: int = 3
    rows: int = 64  # records written per data set
    # Issue 27's realistic rollout: 8 prompts x 8 completions x 512 tokens per step (64 rows,
    # one generate call), the update in micro-batches of `big_micro` rows.
    big_prompts: int = 8
    big_completion: int = 512
    big_micro: int = 16
    big_steps: int = 2

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            sft_image=56, sft_text=24, sft_batch=2, lora_batch=2, dpo_batch=2, sft_steps=2,
            grpo_image=56, grpo_text=8, prompts=1, generations=2, completion=8, grpo_steps=2,
            rows=8, big_prompts=2, big_completion=12, big_micro=2, big_steps=2,
        )  # fmt: skip


@dataclass
class Case:
    name: str
    algo: str
    overrides: list[str]
    kind: str  # sft | dpo | grpo: which data set
    needs: str | None = None  # a module the case needs (liger_kernel)


def cases(sizes: Sizes, eos_ids: list[int]) -> dict[str, Case]:
    grpo = [
        "algo=grpo",
        f"train.per_device_train_batch_size={sizes.prompts * sizes.generations}",
        f"algo.args.num_generations={sizes.generations}",
        f"algo.args.max_completion_length={sizes.completion}",
        "algo.args.beta=0.04",
        # Random weights: completions must run to max_completion_length, as in a long rollout.
        f"++algo.args.generation_kwargs.suppress_tokens=[{','.join(map(str, eos_ids))}]",
        "reward=[think_format]",
        f"train.max_steps={sizes.grpo_steps}",
    ]
    sft = [f"train.max_steps={sizes.sft_steps}"]
    # Issue 27: the same GRPO runs under each HF rollout engine, side by side.
    replaced = (
        "train.per_device_train_batch_size",
        "algo.args.max_completion_length",
        "train.max_steps",
    )
    big = [
        *(o for o in grpo if not o.startswith(replaced)),
        f"train.per_device_train_batch_size={sizes.big_micro}",
        f"train.gradient_accumulation_steps={sizes.big_prompts * sizes.generations // sizes.big_micro}",
        f"algo.args.max_completion_length={sizes.big_completion}",
        "rollout.micro_batch=null",  # the same update layout under both engines
        f"train.max_steps={sizes.big_steps}",
    ]
    rollout_cases = [
        Case(f"{name}_{engine}", "grpo", [*base, f"rollout={engine}", *memory_of], "grpo")
        for name, base, memory_of in (
            ("grpo_ckpt", grpo, ["memory=grad_ckpt"]),
            ("grpo_big_ckpt", big, ["memory=grad_ckpt"]),
            ("grpo_lora_ckpt", grpo, ["memory=[lora,grad_ckpt]"]),
            ("grpo_big_lora_ckpt", big, ["memory=[lora,grad_ckpt]"]),
        )
        for engine in ROLLOUT_ENGINES
    ]
    # The cases measured before the rollout engines pin plain HF generate (comparable runs).
    grpo = [*grpo, "rollout=hf"]
    table = [
        *rollout_cases,
        Case("grpo", "grpo", [*grpo, "memory=none"], "grpo"),
        Case("grpo_ckpt", "grpo", [*grpo, "memory=grad_ckpt"], "grpo"),
        Case("grpo_liger", "grpo", [*grpo, "memory=[grad_ckpt,liger]"], "grpo", "liger_kernel"),
        Case("grpo_lora_ckpt", "grpo", [*grpo, "memory=[lora,grad_ckpt]"], "grpo"),
        Case("grpo_fast", "grpo", [*grpo, "memory=none", "speed=rl_gpu"], "grpo", "liger_kernel"),
        Case(
            "sft_full",
            "sft",
            [
                "algo=sft",
                "memory=none",
                f"train.per_device_train_batch_size={sizes.sft_batch}",
                *sft,
            ],
            "sft",
        ),
        Case(
            "sft_lora",
            "sft",
            [
                "algo=sft",
                "memory=lora",
                f"train.per_device_train_batch_size={sizes.lora_batch}",
                *sft,
            ],
            "sft",
        ),
        Case(
            "dpo_lora",
            "dpo",
            [
                "algo=dpo",
                "memory=lora",
                f"train.per_device_train_batch_size={sizes.dpo_batch}",
                *sft,
            ],
            "dpo",
        ),
    ]
    return {case.name: case for case in table}


# (model, case) in the order they run: what the issue measured first, then the rest, so a
# spent time budget drops the least important ones.
DEFAULT_PLAN = [
    ("3b", "grpo_ckpt"),
    ("3b", "sft_full"),
    ("3b", "grpo"),  # 124.6 GiB measured: skipped (planner) on an 80 GB card
    ("3b", "sft_lora"),
    ("3b", "dpo_lora"),
    ("3b", "grpo_fast"),
    ("7b", "sft_lora"),
    ("3b", "grpo_liger"),
    ("7b", "grpo_lora_ckpt"),
]
# Issue 16: Qwen3-VL dense and MoE, SFT and GRPO. 30B-A3B's 62 GB of weights leave no room
# for full fine-tuning on one card: LoRA (adapters off the experts) with checkpointing.
QWEN3_PLAN = [
    ("q3_8b", "grpo_lora_ckpt"),
    ("q3_30b_a3b", "grpo_lora_ckpt"),
    ("q3_8b", "sft_lora"),
    ("q3_30b_a3b", "sft_lora"),
    ("q3_8b", "sft_full"),
    ("q3_8b", "grpo_ckpt"),
]
# Issue 27: each case under rollout=hf and rollout=hf_fast, in one run on one card (the
# 3B with full weights, the Qwen3-VL-8B with LoRA). The targets are on the realistic
# 8 x 8 x 512 batch, so those pairs run first and one device call measures them; today's
# 2 x 8 x 256 pairs follow while the budget lasts (the rest are recorded as skipped).
ROLLOUT_ENGINES = ("hf", "hf_fast")
ROLLOUT_PLAN = [
    (model, f"{case}_{engine}")
    for model, case in (
        ("3b", "grpo_big_ckpt"),
        ("q3_8b", "grpo_big_lora_ckpt"),
        ("3b", "grpo_ckpt"),
        ("q3_8b", "grpo_lora_ckpt"),
    )
    for engine in ("hf_fast", "hf")
]
PLANS = {"default": DEFAULT_PLAN, "qwen3": QWEN3_PLAN, "rollout": ROLLOUT_PLAN}
SMOKE_PLAN = [("smoke", "sft_full"), ("smoke", "dpo_lora"), ("smoke", "grpo_ckpt")]
SMOKE_PLANS = {
    "rollout": [
        (model, f"{case}_{engine}")
        for model, case in (("smoke", "grpo_ckpt"), ("smoke", "grpo_big_lora_ckpt"))
        for engine in ROLLOUT_ENGINES
    ]
}
SMOKE_MODELS = {"smoke": "qwen2_5_vl", "smoke_moe": "qwen3_vl_moe"}  # tiny builds


# --- the random-weight checkpoint -----------------------------------------------------------


def build_checkpoint(
    source: Path, out: Path, processor_dir: Path, device: str, dtype_name: str
) -> Path:
    """A random-weight model of `source`'s config.json, loadable by `from_pretrained`, with
    the family's tiny tokenizer's special-token ids and processor (vocab_size kept)."""
    import torch
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    if (out / "config.json").is_file():
        return out
    processor = AutoProcessor.from_pretrained(processor_dir)
    ids = tiny_token_ids(processor.tokenizer)
    config = AutoConfig.from_pretrained(source)
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        setattr(config, key, ids[key])
    if getattr(config, "vision_token_id", None) is not None:
        config.vision_token_id = ids["vision_token_id"]
    text = config.get_text_config()
    text.bos_token_id, text.eos_token_id, text.pad_token_id = ids["bos"], ids["eos"], ids["pad"]
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_random_weights(config, staging / "model.safetensors", getattr(torch, dtype_name), device)
    config.save_pretrained(staging)
    GenerationConfig(
        eos_token_id=[ids["eos"], ids["pad"]], pad_token_id=ids["pad"], do_sample=True
    ).save_pretrained(staging)
    processor.save_pretrained(staging)
    staging.rename(out)
    return out


SAFETENSORS_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def write_random_weights(config, path: Path, dtype, device: str, seed: int = 0) -> None:
    """One safetensors file holding every tensor of `config`'s model: N(0, 0.02) matrices,
    norm weights 1, biases 0, and experts (`.experts.` tensors) as zeros the file skips.

    The model is built on the meta device for names and shapes only, so no copy of the whole
    model is ever held; each tensor is drawn on `device`, written, and dropped."""
    import struct

    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    tensors = model.state_dict()
    header, offset = {}, 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        dtype_name = SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")]
        header[name] = {"dtype": dtype_name, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    generator = torch.Generator(device=device).manual_seed(seed)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        start = f.tell()
        for name, tensor in tensors.items():
            if ".experts." in name:
                continue  # a hole: reads back as zeros
            values = random_tensor(name, tensor, generator, device)
            f.seek(start + header[name]["data_offsets"][0])
            f.write(values.cpu().contiguous().view(torch.uint8).numpy().tobytes())
        f.truncate(start + offset)


def random_tensor(name: str, like, generator, device: str):
    import torch

    if like.ndim == 1 and name.endswith(".weight"):
        return torch.ones(like.shape, dtype=like.dtype, device=device)  # norms
    if like.ndim == 1:
        return torch.zeros(like.shape, dtype=like.dtype, device=device)  # biases
    values = torch.randn(like.shape, generator=generator, dtype=torch.float32, device=device)
    return values.mul_(0.02).to(like.dtype)


def tiny_token_ids(tokenizer) -> dict[str, int]:
    token = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": token("<|image_pad|>"),
        "video_token_id": token("<|video_pad|>"),
        "vision_token_id": token("<|vision_pad|>"),
        "vision_start_token_id": token("<|vision_start|>"),
        "vision_end_token_id": token("<|vision_end|>"),
        "bos": token("<|endoftext|>"),
        "eos": token("<|im_end|>"),
        "pad": token("<|endoftext|>"),
    }


# --- data -----------------------------------------------------------------------------------

WORDS = [
    "the",
    "red",
    "circle",
    "is",
    "left",
    "of",
    "a",
    "blue",
    "square",
    "and",
    "above",
    "green",
    "triangle",
    "count",
    "shapes",
]


def text_of(tokenizer, tokens: int, seed: int) -> str:
    """Words whose tokenization is about `tokens` tokens long."""
    import random

    rng = random.Random(seed)
    words: list[str] = []
    while len(tokenizer(" ".join(words))["input_ids"]) < tokens:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def write_data(root: Path, sizes: Sizes, tokenizer) -> dict[str, Path]:
    """JSONL sets (sft, dpo, grpo) of random-noise images; returns kind -> train.jsonl."""
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for side in {sizes.sft_image, sizes.grpo_image}:
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"noise{side}.png")
    half = sizes.sft_text // 2
    rows = {"sft": [], "dpo": [], "grpo": []}
    for i in range(sizes.rows):
        question, answer = text_of(tokenizer, half, i), text_of(tokenizer, half, 10_000 + i)
        rejected = text_of(tokenizer, half, 20_000 + i)
        image = f"noise{sizes.sft_image}.png"
        rows["sft"].append({"image": image, "prefix": question, "suffix": answer})
        rows["dpo"].append(
            {"image": image, "prefix": question, "suffix": answer, "rejected": rejected}
        )
        rows["grpo"].append(
            {
                "image": f"noise{sizes.grpo_image}.png",
                "prefix": text_of(tokenizer, sizes.grpo_text, 30_000 + i),
                "solution": "3",
            }
        )
    paths = {}
    for kind, records in rows.items():
        paths[kind] = root / f"{kind}.jsonl"
        paths[kind].write_text("".join(json.dumps(r) + "\n" for r in records))
    return paths


# --- one case -------------------------------------------------------------------------------


@dataclass
class Result:
    model: str
    case: str
    status: str  # ok | oom | timeout | failed | skipped
    overrides: list[str] = field(default_factory=list)
    wall_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # medians after the warm-up step
    peak_allocated_gib: float | None = None
    peak_reserved_gib: float | None = None
    nvidia_smi_peak_gib: float | None = None
    planner_gib: float | None = None
    planner_error_pct: float | None = None  # planner vs the card's peak (nvidia-smi)
    note: str = ""
    log_tail: str = ""  # the end of a failed run's stderr, so a remote bench's JSON says why


class GpuMemorySampler:
    """The largest `memory.used` nvidia-smi reports while the block runs (GiB), or None."""

    def __init__(self, interval_ms: int = 200) -> None:
        self.interval_ms = interval_ms
        self.peak_mib: float | None = None
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuMemorySampler:
        if shutil.which("nvidia-smi") is None:
            return self
        self._process = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
             "--id=0", f"--loop-ms={self.interval_ms}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            try:
                value = float(line.strip())
            except ValueError:
                continue
            self.peak_mib = value if self.peak_mib is None else max(self.peak_mib, value)

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._thread.join(timeout=10)

    @property
    def peak_gib(self) -> float | None:
        return None if self.peak_mib is None else self.peak_mib * 1024**2 / GIB


def summarize(rows: list[dict]) -> tuple[dict[str, float], float | None, float | None]:
    """Medians of perf/* and timing_s/* over the logged steps after the first (warm-up),
    and the largest max_memory_allocated / reserved any step logged."""
    steps = [
        r for r in rows if "train_runtime" not in r and not any(k.startswith("eval") for k in r)
    ]
    counted = steps[1:] or steps
    keys = sorted({k for r in counted for k in r if k.startswith(("perf/", "timing_s/"))})
    medians = {
        k: statistics.median(r[k] for r in counted if isinstance(r.get(k), int | float))
        for k in keys
        if any(isinstance(r.get(k), int | float) for r in counted)
    }
    memory = ("perf/max_memory_allocated_gb", "perf/max_memory_reserved_gb")
    peaks = [max((r.get(k) or 0 for r in steps), default=0) or None for k in memory]
    for key in memory:
        medians.pop(key, None)
    return medians, peaks[0], peaks[1]


def failure(stderr: str, returncode: int) -> tuple[str, str]:
    """(status, note) of a failed run from its exit code and the end of its stderr."""
    if "OutOfMemoryError" in stderr or "CUDA out of memory" in stderr:
        return "oom", "CUDA out of memory"
    if returncode in (-9, 137) and "Killed" in stderr:
        return "failed", "killed (host memory?)"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "failed", (lines[-1] if lines else f"exit {returncode}")[:300]


def planner(overrides: list[str], kind: str, sizes: Sizes, text_tokens: int, card_gib: float):
    """The planner's estimate (GiB) for the run `overrides` describes."""
    from vlexp.plan import plan_run

    image = sizes.grpo_image if kind == "grpo" else sizes.sft_image
    plan = {
        "gpu_mem_gb": card_gib,
        "text_tokens": text_tokens,
        "image_height": image,
        "image_width": image,
        "images_per_sample": 1,
    }
    _, est = plan_run(overrides, plan)
    return est.total / GIB


def run_case(
    case: Case, model_key: str, common: list[str], work: Path, timeout: int, env: dict
) -> tuple[Result, list[dict]]:
    run_dir = work / "runs" / f"{model_key}-{case.name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [*common, *case.overrides, f"hydra.run.dir={run_dir}"]
    result = Result(model=model_key, case=case.name, status="ok", overrides=overrides)
    start = time.perf_counter()
    with GpuMemorySampler() as sampler:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "vlexp", *overrides],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            proc = None
    result.wall_s = round(time.perf_counter() - start, 1)
    result.nvidia_smi_peak_gib = sampler.peak_gib
    run_dir.mkdir(parents=True, exist_ok=True)
    if proc is None:
        result.status, result.note = "timeout", f"over {timeout} s"
    else:
        (run_dir / "bench-stderr.log").write_text(proc.stderr[-200_000:])
        if proc.returncode != 0:
            result.status, result.note = failure(proc.stderr, proc.returncode)
            result.log_tail = proc.stderr[-4000:]
    shutil.rmtree(run_dir / "final", ignore_errors=True)  # a full copy of the weights: disk
    metrics_file = run_dir / "metrics.jsonl"
    rows = (
        [json.loads(line) for line in metrics_file.read_text().splitlines()]
        if metrics_file.is_file()
        else []
    )
    result.metrics, result.peak_allocated_gib, result.peak_reserved_gib = summarize(rows)
    return result, rows


# --- report ---------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    """The results as the Markdown table docs/performance.md shows."""

    def num(value, fmt="{:.0f}"):
        return "-" if value is None else fmt.format(value)

    lines = [
        "| model | case | status | tokens/s/GPU | MFU | s/step | generate / logprobs / update s | peak alloc GiB | card peak GiB | planner GiB | planner error |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        phases = " / ".join(
            num(m.get(f"timing_s/{p}"), "{:.1f}") for p in ("generate", "logprobs", "update")
        )
        mfu = m.get("perf/mfu")
        lines.append(
            f"| {r.model} | {r.case} | {r.status}{' (' + r.note + ')' if r.note else ''} "
            f"| {num(m.get('perf/tokens_per_second_per_gpu'))} | {num(None if mfu is None else 100 * mfu, '{:.1f}%')} "
            f"| {num(m.get('timing_s/step'), '{:.2f}')} | {phases} | {num(r.peak_allocated_gib, '{:.1f}')} "
            f"| {num(r.nvidia_smi_peak_gib, '{:.1f}')} | {num(r.planner_gib, '{:.1f}')} "
            f"| {num(r.planner_error_pct, '{:+.0f}%')} |"
        )
    return "\n".join(lines)


def engine_table(results: list[Result]) -> str:
    """Issue 27's comparison: each case under rollout=hf and rollout=hf_fast, side by side:
    tokens/s, the share of the step spent generating, recompiles, and hf_fast / hf."""

    def num(value, fmt="{:.0f}"):
        return "-" if value is None else fmt.format(value)

    pairs: dict[tuple[str, str], dict[str, Result]] = {}
    for r in results:
        base, _, engine = r.case.rpartition("_hf")
        if base and engine in ("", "_fast"):
            pairs.setdefault((r.model, base), {})["hf" + engine] = r
    lines = [
        "| model | case | engine | status | tokens/s/GPU | s/step | generate s (share) | recompiles | card peak GiB | planner GiB | hf_fast / hf |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, base), by_engine in pairs.items():
        speed = {e: r.metrics.get("perf/tokens_per_second_per_gpu") for e, r in by_engine.items()}
        ratio = speed["hf_fast"] / speed["hf"] if speed.get("hf") and speed.get("hf_fast") else None
        for engine in ROLLOUT_ENGINES:
            r = by_engine.get(engine)
            if r is None:
                continue
            m = r.metrics
            step, generate = m.get("timing_s/step"), m.get("timing_s/generate")
            share = f" ({100 * generate / step:.0f}%)" if step and generate is not None else ""
            lines.append(
                f"| {model} | {base} | {engine} | {r.status}{' (' + r.note + ')' if r.note else ''} "
                f"| {num(speed[engine])} | {num(step, '{:.2f}')} | {num(generate, '{:.1f}')}{share} "
                f"| {num(m.get('perf/recompiles'))} | {num(r.nvidia_smi_peak_gib, '{:.1f}')} "
                f"| {num(r.planner_gib, '{:.1f}')} "
                f"| {num(ratio if engine == 'hf_fast' else None, '{:.2f}x')} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


# --- driver ---------------------------------------------------------------------------------


def text_tokens(processor, record: dict, kind: str) -> int:
    """Text tokens of one row as the run tokenizes it (chat template included, the image's
    own tokens not: the planner adds those): the prompt, plus the answer for SFT/DPO."""
    from vlexp.models.tiny import image_question_prompt

    prompt = image_question_prompt(processor, record["prefix"])
    count = len(processor.tokenizer(prompt)["input_ids"]) - 1  # the one <|image_pad|>
    if kind != "grpo":
        count += len(processor.tokenizer(record["suffix"] + "<|im_end|>\n")["input_ids"])
    return count


@dataclass
class FamilySetup:
    """What the runs of one model family share: the tiny build whose processor and tokenizer
    the random checkpoint gets, the data sets written with that tokenizer, the cases."""

    tiny_dir: Path
    processor: Any
    data: dict[str, Path]
    first: dict[str, dict]
    cases: dict[str, Case]


_SETUPS: dict[str, FamilySetup] = {}


def family_setup(model_key: str, smoke: bool, work: Path, sizes: Sizes) -> FamilySetup:
    from transformers import AutoProcessor

    from vlexp import families
    from vlexp.models import tiny

    if smoke:
        tiny_name = SMOKE_MODELS[model_key]
    else:
        tiny_name = families.of_model_type(families.model_type_of(MODELS[model_key])).name
    if tiny_name not in _SETUPS:
        tiny_dir = tiny.ensure(tiny_name)
        processor = AutoProcessor.from_pretrained(tiny_dir)
        ids = tiny_token_ids(processor.tokenizer)
        data = write_data(work / "data" / tiny_name, sizes, processor.tokenizer)
        first = {kind: json.loads(path.read_text().splitlines()[0]) for kind, path in data.items()}
        table_of_cases = cases(sizes, [ids["eos"], ids["pad"]])
        _SETUPS[tiny_name] = FamilySetup(tiny_dir, processor, data, first, table_of_cases)
    return _SETUPS[tiny_name]


def parse_runs(items: list[str], smoke: bool) -> list[tuple[str, str]]:
    models = list(SMOKE_MODELS) if smoke else list(MODELS)
    runs = []
    for item in items:
        model, _, case = item.partition(":")
        if model not in models or not case:
            raise SystemExit(f"--runs {item}: use MODEL:CASE with MODEL one of {', '.join(models)}")
        runs.append((model, case))
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=None, help="MODEL:CASE pairs (3b:grpo_ckpt)")
    parser.add_argument("--plan", choices=sorted(PLANS), default="default", help="a set of runs")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per case")
    parser.add_argument("--budget", type=int, default=420, help="seconds for the whole bench")
    parser.add_argument("--work", default="/tmp/vlexp-bench", help="checkpoints, data, run dirs")
    parser.add_argument("--attn", default="sdpa", help="model.attn_implementation")
    parser.add_argument("--smoke-cpu", action="store_true", help="CPU, toy sizes, tiny config")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    opts = parser.parse_args(argv)

    import importlib.util

    import torch

    if not torch.cuda.is_available() and not opts.smoke_cpu:
        print(
            "bench/gpu.py needs a CUDA GPU and none is visible (torch.cuda.is_available() is "
            "False); --smoke-cpu runs the same code on CPU at toy sizes",
            file=sys.stderr,
        )
        return 2
    began = time.perf_counter()
    plan = parse_runs(opts.runs, opts.smoke_cpu) if opts.runs else None
    smoke_plan = SMOKE_PLANS.get(opts.plan, SMOKE_PLAN)
    plan = plan or (smoke_plan if opts.smoke_cpu else PLANS[opts.plan])
    sizes = Sizes.smoke() if opts.smoke_cpu else Sizes()
    work = Path(opts.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = describe()
    card_gib = machine.get("gpu", {}).get("mem_gib") or 80.0
    env = {**os.environ, "VLEXP_CACHE": os.environ.get("VLEXP_CACHE", str(work / "cache"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    os.environ["VLEXP_CACHE"] = env["VLEXP_CACHE"]  # the tiny build this process makes too

    from vlexp import families

    checkpoints: dict[str, Path] = {}
    results: list[Result] = []
    for model_key, name in plan:
        setup = family_setup(model_key, opts.smoke_cpu, work, sizes)
        case = setup.cases.get(name)
        left = opts.budget - (time.perf_counter() - began)
        if case is None:
            raise SystemExit(f"unknown case {name}: {', '.join(setup.cases)}")
        if case.needs and importlib.util.find_spec(case.needs) is None:
            results.append(Result(model_key, name, "skipped", note=f"{case.needs} not installed"))
            continue
        if left < 60:
            results.append(Result(model_key, name, "skipped", note="bench time budget spent"))
            continue
        if model_key not in checkpoints:
            source = (
                setup.tiny_dir
                if opts.smoke_cpu
                else families.bundled_config(MODELS[model_key]).parent
            )
            began_build = time.perf_counter()
            checkpoints[model_key] = build_checkpoint(
                source,
                work / "models" / f"random-{model_key}",
                setup.tiny_dir,
                "cpu" if opts.smoke_cpu else "cuda",
                "float32" if opts.smoke_cpu else "bfloat16",
            )
            print(
                f"{model_key}: checkpoint in {time.perf_counter() - began_build:.0f} s", flush=True
            )
            if not opts.smoke_cpu:
                torch.cuda.empty_cache()
        common = [
            f"model={MODEL_OPTIONS[model_key]}",
            f"model.name_or_path={checkpoints[model_key]}",
            f"model.attn_implementation={opts.attn}",
            f"model.dtype={'float32' if opts.smoke_cpu else 'bfloat16'}",
            "data=jsonl",
            f"data.train={setup.data[case.kind]}",
            "train.logging_steps=1",
            "train.save_steps=100000",
        ]
        processor, first = setup.processor, setup.first
        text = text_tokens(processor, first[case.kind], case.kind)
        predicted = planner([*common, *case.overrides], case.kind, sizes, text, card_gib)
        left = opts.budget - (time.perf_counter() - began)  # the checkpoint build took some
        if predicted > 1.1 * card_gib and not opts.smoke_cpu:
            result = Result(model_key, name, "skipped", note=f"planner: {predicted:.0f} GiB > card")
        elif left < 60:
            result = Result(model_key, name, "skipped", note="bench time budget spent")
        else:
            result, _ = run_case(case, model_key, common, work, min(opts.timeout, int(left)), env)
        result.planner_gib = round(predicted, 2)
        measured = result.nvidia_smi_peak_gib
        if measured is None and result.peak_reserved_gib is not None:
            measured = result.peak_reserved_gib + 1.0  # + the CUDA context the planner counts
        if measured and result.status == "ok":
            result.planner_error_pct = round(100 * (predicted - measured) / measured, 1)
        results.append(result)
        print(f"{model_key} {name}: {result.status} {result.note} {result.metrics}", flush=True)

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = machine.get("gpu", {}).get("name", "cpu")
    tag = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M")
    stem = f"gpu-{tag}-{machine['host']}-{stamp}{'-smoke' if opts.smoke_cpu else ''}"
    command = ["python", "bench/gpu.py", *(argv if argv is not None else sys.argv[1:])]
    record = {
        "machine": machine,
        "command": " ".join(command),
        "sizes": asdict(sizes),
        "wall_s": round(time.perf_counter() - began, 1),
        "results": [asdict(r) for r in results],
    }
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    markdown = table(results)
    (out / f"{stem}.md").write_text(f"{gpu}, {stamp} UTC, `{record['command']}`\n\n{markdown}\n")
    compared = engine_table(results)
    if compared:
        markdown += "\n\n" + compared
        (out / f"{stem}.md").write_text(
            f"{gpu}, {stamp} UTC, `{record['command']}`\n\n{markdown}\n"
        )
    print(markdown)
    print(f"wrote {out / stem}.json and .md")
    return 0 if all(r.status in ("ok", "skipped", "oom") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
