"""GPU throughput and memory of the real Qwen2.5-VL-3B/7B architectures (random bf16 weights).

    python bench/gpu.py                                  # 3b and 7b, every section
    python bench/gpu.py --models 7b --sections sft memory --sft-batch 4
    python bench/gpu.py --smoke-cpu                      # the code paths on CPU, tiny model

Needs a CUDA GPU (it stops with a message otherwise); nothing is downloaded: the models are
built from the config.json copies bundled in src/vlexp/families/configs (random weights, bf16,
`--attn sdpa` or flash_attention_2), inputs are synthetic token ids plus one image of
`--image HxW` pixels resized by smart_resize to the model's pixel budget.

Sections:
- sft: forward + backward + AdamW step through TRL's fused LM head (as SFTTrainer runs it);
  tokens/s and MFU, FLOPs counted for the text tower (6N + attention) and the vision tower
  (its blocks over patches, windowed and full attention, the merger over image tokens).
- grpo: one GRPO iteration over prompts x num_generations completions of fixed length:
  generation (HF generate; vLLM too when installed and a processor can be loaded),
  log-probs (policy without grad + reference), update (clipped-ratio loss, backward, step);
  samples/s and the seconds of each part.
- memory: peak GPU memory of a few SFT steps for the presets none, lora, grad_ckpt and liger
  (if installed), next to `python -m vlexp.plan`'s estimate of the same run (the error).
Results: bench/results/gpu-<gpu>-<host>.json with the machine description.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from machine import describe  # noqa: E402

MODELS = {"3b": "qwen2_5_vl_3b", "7b": "qwen2_5_vl_7b"}
# Dense bf16 peak, FLOP/s (vendor datasheets, no sparsity); --peak-tflops overrides.
PEAK = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def peak_flops(name: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    return next((v for k, v in PEAK.items() if k in name), None)


# --- model and inputs -----------------------------------------------------------------------


def build_model(name: str, device, dtype, attn: str, smoke: bool):
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    from trl.trainer.utils import add_fused_lm_head

    from vlexp.families import bundled_config
    from vlexp.models.loading import resolve_path

    if smoke:
        config = AutoConfig.from_pretrained(resolve_path("tiny://qwen2_5_vl"))
    else:
        from tests.helpers import compose

        hub_id = compose([f"model={name}"]).model.name_or_path
        config = AutoConfig.from_pretrained(bundled_config(hub_id).parent)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=dtype, attn_implementation=attn
        )
    add_fused_lm_head(model, outputs=("log_probs",))  # as TRL's trainers do: no full logits
    return model


def image_grid(model, height: int, width: int, min_pixels: int, max_pixels: int):
    """(patch grid h, w, LLM image tokens) of one image after smart_resize."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    v = model.config.vision_config
    h, w = smart_resize(height, width, v.patch_size * v.spatial_merge_size, min_pixels, max_pixels)
    gh, gw = h // v.patch_size, w // v.patch_size
    return gh, gw, gh * gw // v.spatial_merge_size**2


def make_batch(model, rows: int, text: int, grid, device, dtype, completion: int = 0):
    """Token ids: <vision_start> image pads <vision_end> + random text (+ completion)."""
    import torch

    cfg, v = model.config, model.config.vision_config
    gh, gw, tokens = grid
    vocab = min(cfg.get_text_config().vocab_size, cfg.vision_start_token_id) - 1
    body = torch.randint(0, vocab, (rows, text + completion), device=device)
    image = torch.tensor(
        [cfg.vision_start_token_id] + [cfg.image_token_id] * tokens + [cfg.vision_end_token_id],
        device=device,
    ).expand(rows, -1)
    input_ids = torch.cat([image, body], dim=1)
    patch_dim = 3 * v.temporal_patch_size * v.patch_size**2
    pixel_values = torch.randn(rows * gh * gw, patch_dim, device=device, dtype=dtype)
    grid_thw = torch.tensor([[1, gh, gw]] * rows, device=device)
    labels = input_ids.clone()
    labels[:, : image.shape[1]] = -100  # the loss covers the text only, as in vlexp's SFT
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixel_values,
        "image_grid_thw": grid_thw,
        "labels": labels,
    }


# --- FLOPs ----------------------------------------------------------------------------------


def train_flops(model, rows: int, seq: int, grid) -> float:
    """Forward + backward FLOPs of one step (PaLM's 6N + 12 L h s per token, no causal discount).

    Text: 6 x (every matmul parameter of the decoder and LM head, embeddings excluded) per
    token, plus 12 x layers x hidden x seq per token for attention scores and values.
    Vision: 6 x block and patch-embedding parameters per patch, plus 12 x hidden x window per
    patch and block (window = 64 patches for windowed blocks, the image for full blocks),
    and 6 x merger parameters per image token.
    """
    text_cfg, v = model.config.get_text_config(), model.config.vision_config
    named = dict(model.named_parameters())
    lm = sum(
        p.numel()
        for n, p in named.items()
        if "language_model" in n and "embed_tokens" not in n and p.dim() > 1
    )
    lm += model.get_output_embeddings().weight.numel()
    blocks = sum(
        p.numel()
        for n, p in named.items()
        if ".visual.blocks." in f".{n}" or n.startswith("visual.blocks") or ("patch_embed" in n)
    )
    merger = sum(p.numel() for n, p in named.items() if "merger" in n)
    gh, gw, tokens = grid
    patches = gh * gw
    tokens_total = rows * seq
    flops = 6 * lm * tokens_total
    flops += 12 * text_cfg.num_hidden_layers * text_cfg.hidden_size * seq * tokens_total
    hv = getattr(v, "embed_dim", None) or v.hidden_size
    full = set(getattr(v, "fullatt_block_indexes", None) or range(v.depth))
    window = (getattr(v, "window_size", 0) // v.patch_size) ** 2 or patches
    attn = sum(patches if b in full else min(window, patches) for b in range(v.depth))
    flops += rows * (6 * blocks * patches + 12 * hv * attn * patches + 6 * merger * tokens)
    return float(flops)


# --- sections -------------------------------------------------------------------------------


def sync(device) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def sft(model, batch, device, steps: int, warmup: int) -> dict:
    """Seconds per optimizer step, after `warmup` untimed steps."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    times = []
    for step in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        loss = model(**batch, fused_lm_head=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    del optimizer
    return {"step_s": sorted(times)[len(times) // 2], "steps": steps}


def completion_logps(model, batch, completion: int):
    """Per-token log-probs of the last `completion` tokens (TRL's fused head), (B, C)."""
    labels = batch["input_ids"].clone()
    labels[:, :-completion] = -100
    out = model(
        **{k: v for k, v in batch.items() if k != "labels"}, labels=labels, fused_lm_head=True
    )
    return out.log_probs[:, -completion:]


def grpo(model, ref, prompt_batch, opts, device) -> dict:
    """One GRPO iteration, timed in its three parts; `ref=None` disables the PEFT adapters."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    prompts = {k: v for k, v in prompt_batch.items() if k != "labels"}
    cfg = model.config
    placeholders = [
        cfg.image_token_id,
        cfg.video_token_id,
        cfg.vision_start_token_id,
        cfg.vision_end_token_id,
    ]
    result = {}
    for it in range(opts.grpo_iters + 1):  # the first iteration warms up and is not kept
        model.eval()
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():  # random weights: keep vision placeholders out of completions
            ids = model.generate(
                **prompts,
                max_new_tokens=opts.completion,
                min_new_tokens=opts.completion,
                do_sample=True,
                top_p=1.0,
                suppress_tokens=placeholders,
            )
        sync(device)
        t1 = time.perf_counter()
        batch = {**prompts, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        with torch.no_grad():
            old = completion_logps(model, batch, opts.completion)
            if ref is not None:
                ref_lp = completion_logps(ref, batch, opts.completion)
            else:
                with model.disable_adapter():
                    ref_lp = completion_logps(model, batch, opts.completion)
        sync(device)
        t2 = time.perf_counter()
        model.train()
        advantages = torch.randn(ids.shape[0], 1, device=ids.device)
        logp = completion_logps(model, batch, opts.completion)  # (B, C)
        ratio = torch.exp(logp - old)
        clipped = torch.clamp(ratio, 0.8, 1.2)
        kl = torch.exp(ref_lp - logp) - (ref_lp - logp) - 1  # K3
        loss = (-torch.min(ratio * advantages, clipped * advantages) + 0.04 * kl).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        t3 = time.perf_counter()
        if it:
            for key, value in (
                ("generation_s", t1 - t0),
                ("logprob_s", t2 - t1),
                ("update_s", t3 - t2),
            ):
                result.setdefault(key, []).append(value)
    out = {k: sorted(v)[len(v) // 2] for k, v in result.items()}
    out["samples_per_s"] = ids.shape[0] / sum(out.values())
    out["samples"] = int(ids.shape[0])
    del optimizer
    return out


def vllm_generation(name: str, model, opts, grid) -> dict:
    """Generation seconds with vLLM for the same prompts (needs vllm and the model's processor)."""
    import importlib.util
    import tempfile

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vllm is not installed (pip install vllm)"}
    from transformers import AutoProcessor

    from tests.helpers import compose

    hub_id = compose([f"model={name}"]).model.name_or_path
    try:  # the tokenizer/processor files only (no weights): a hub cache or network is needed
        processor = AutoProcessor.from_pretrained(hub_id)
    except Exception as err:  # noqa: BLE001 - reported in the results, not fatal
        return {"skipped": f"cannot load the {hub_id} processor for vLLM: {err}"[:300]}
    import numpy as np
    from PIL import Image
    from vllm import LLM, SamplingParams

    with tempfile.TemporaryDirectory(prefix="vlexp-vllm-") as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        llm = LLM(
            model=tmp,
            dtype="bfloat16",
            gpu_memory_utilization=opts.vllm_mem,
            max_model_len=4096,
            limit_mm_per_prompt={"image": 1},
            seed=0,
        )
        gh, gw, _ = grid
        v = model.config.vision_config
        image = Image.fromarray(
            np.random.randint(0, 255, (gh * v.patch_size, gw * v.patch_size, 3), dtype=np.uint8)
        )
        text = "<|vision_start|><|image_pad|><|vision_end|>" + "Describe the image. " * (
            opts.text // 5
        )
        params = SamplingParams(
            n=opts.generations,
            max_tokens=opts.completion,
            min_tokens=opts.completion,
            temperature=1.0,
        )
        requests = [{"prompt": text, "multi_modal_data": {"image": image}}] * opts.prompts
        llm.generate(requests, params)  # warm-up (CUDA graphs, caches)
        start = time.perf_counter()
        llm.generate(requests, params)
        elapsed = time.perf_counter() - start
        del llm
    return {"generation_s": elapsed, "samples": opts.prompts * opts.generations}


def memory(name: str, preset: str, opts, device, dtype) -> dict:
    """Peak GPU memory of a few SFT steps under a preset, and the planner's estimate."""
    import importlib.util

    import torch

    from tests.helpers import compose
    from vlexp.recipe.estimate import estimate

    overrides = [f"model={name}", "algo=sft", f"train.per_device_train_batch_size={opts.mem_batch}"]
    overrides += {
        "none": ["memory=none"],
        "lora": ["memory=lora"],
        "liger": ["memory=liger"],
        "grad_ckpt": ["memory=none", "memory.gradient_checkpointing=true"],
    }[preset]
    if preset == "liger" and importlib.util.find_spec("liger_kernel") is None:
        return {"skipped": "liger-kernel is not installed"}
    cfg = compose(overrides)
    plan = {
        "text_tokens": opts.text,
        "image_height": opts.image[0],
        "image_width": opts.image[1],
        "images_per_sample": 1,
        "gpu_mem_gb": 80,
        "device": "none",
    }
    predicted = estimate(cfg, plan).total
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        model = build_model(name, device, dtype, opts.attn, smoke=False)
        if preset == "lora":
            from hydra.utils import instantiate
            from peft import get_peft_model

            model = get_peft_model(model, instantiate(cfg.memory.peft))
        if preset == "grad_ckpt":
            model.gradient_checkpointing_enable({"use_reentrant": False})
            model.enable_input_require_grads()
        if preset == "liger":
            from liger_kernel.transformers import _apply_liger_kernel_to_instance

            _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False)
        grid = image_grid(model, *opts.image, cfg.model.min_pixels, cfg.model.max_pixels)
        batch = make_batch(model, opts.mem_batch, opts.text, grid, device, dtype)
        sft(model, batch, device, steps=2, warmup=1)
        peak = torch.cuda.max_memory_allocated()
        result = {"peak_gib": peak / 1024**3}
    except torch.cuda.OutOfMemoryError:
        result = {"peak_gib": None, "oom": True}
        peak = None
    finally:
        model = batch = None
        gc.collect()
        torch.cuda.empty_cache()
    result["planner_gib"] = predicted / 1024**3
    if peak:
        result["planner_error_pct"] = 100 * (predicted - peak) / peak
    return result


# --- driver ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["3b", "7b"], choices=sorted(MODELS))
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["sft", "grpo", "memory"],
        choices=["sft", "grpo", "memory"],
    )
    parser.add_argument("--attn", default="sdpa", help="sdpa | flash_attention_2")
    parser.add_argument("--image", type=int, nargs=2, default=[896, 896], metavar=("H", "W"))
    parser.add_argument("--text", type=int, default=256, help="text tokens per sample")
    parser.add_argument("--sft-batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion", type=int, default=128)
    parser.add_argument("--grpo-iters", type=int, default=2)
    parser.add_argument(
        "--grpo-peft",
        nargs="*",
        default=["7b"],
        help="models whose GRPO run uses LoRA (reference = adapters off)",
    )
    parser.add_argument("--vllm-mem", type=float, default=0.3)
    parser.add_argument("--mem-batch", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=["none", "lora", "grad_ckpt", "liger"])
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument(
        "--smoke-cpu",
        action="store_true",
        help="run the sft/grpo code on CPU with the tiny model (no numbers to report)",
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    opts = parser.parse_args()

    import torch

    if not torch.cuda.is_available() and not opts.smoke_cpu:
        raise SystemExit(
            "bench/gpu.py needs a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False); --smoke-cpu checks the code paths only"
        )
    device = "cpu" if opts.smoke_cpu else "cuda"
    dtype = torch.float32 if opts.smoke_cpu else torch.bfloat16
    machine = describe()
    gpu = machine.get("gpu", {}).get("name", "cpu")
    peak = peak_flops(gpu, opts.peak_tflops)
    results = {"machine": machine, "options": vars(opts), "peak_flops": peak, "models": {}}
    if opts.smoke_cpu:
        opts.image, opts.text, opts.completion, opts.steps = [112, 112], 16, 8, 1
        opts.sections = [s for s in opts.sections if s != "memory"]

    from tests.helpers import compose

    for key in opts.models:
        name = MODELS[key]
        cfg = compose([f"model={name}"])
        entry = results["models"].setdefault(key, {"model": cfg.model.name_or_path})
        model = build_model(name, device, dtype, opts.attn, opts.smoke_cpu)
        min_px, max_px = (
            (3136, 12544) if opts.smoke_cpu else (cfg.model.min_pixels, cfg.model.max_pixels)
        )
        grid = image_grid(model, *opts.image, min_px, max_px)
        entry["image_tokens"] = grid[2]
        if "sft" in opts.sections:
            batch = make_batch(model, opts.sft_batch, opts.text, grid, device, dtype)
            seq = batch["input_ids"].shape[1]
            res = sft(model, batch, device, opts.steps, warmup=1)
            flops = train_flops(model, opts.sft_batch, seq, grid)
            res.update(
                batch=opts.sft_batch,
                seq_len=seq,
                flops_per_step=flops,
                tokens_per_s=opts.sft_batch * seq / res["step_s"],
            )
            res["mfu"] = flops / res["step_s"] / peak if peak else None
            entry["sft"] = res
            print(f"{key} sft: {res['tokens_per_s']:.0f} tokens/s, MFU {res['mfu']}", flush=True)
            del batch
        if "grpo" in opts.sections:
            peft = key in opts.grpo_peft
            policy, ref = model, None
            if peft:
                from hydra.utils import instantiate
                from peft import get_peft_model

                policy = get_peft_model(model, instantiate(compose(["memory=lora"]).memory.peft))
            else:
                ref = build_model(name, device, dtype, opts.attn, opts.smoke_cpu).eval()
            prompts = make_batch(
                model, opts.prompts * opts.generations, opts.text, grid, device, dtype
            )
            entry["grpo_hf"] = {**grpo(policy, ref, prompts, opts, device), "lora": peft}
            print(f"{key} grpo (HF generate): {entry['grpo_hf']}", flush=True)
            if not opts.smoke_cpu:
                entry["grpo_vllm_generation"] = vllm_generation(name, model, opts, grid)
            policy = ref = prompts = None
        model = None
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        if "memory" in opts.sections:
            entry["memory"] = {p: memory(name, p, opts, device, dtype) for p in opts.presets}
            print(f"{key} memory: {entry['memory']}", flush=True)

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9]+", "_", gpu).strip("_")
    path = out / f"gpu-{tag}-{machine['host']}{'-smoke' if opts.smoke_cpu else ''}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
