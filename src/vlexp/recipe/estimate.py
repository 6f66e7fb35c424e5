"""Per-GPU memory of a run, estimated from its config and a weightless (meta) copy of the model.

Weights, gradients and optimizer states are counted from the real parameter tensors of the
model built on the meta device (with `freeze_vision` and the PEFT adapters applied exactly as
the run applies them), so for an unsharded run they equal the bytes the run allocates. The
rest (activations, KV cache, DeepSpeed buffers) is a model of what PyTorch keeps alive; each
formula says what it counts. `python -m vlexp.plan` prints the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vlexp import environments, families
from vlexp.config import algo as algorithm
from vlexp.config import memory
from vlexp.models.loading import freeze_vision, peft_config, resolve_path

GIB = 1024**3
# The planner's assumptions where `plan.*` does not say (python -m vlexp.plan shows them).
PLAN_DEFAULTS: dict[str, float] = {
    "gpu_mem_gb": 80,
    "text_tokens": 256,
    "image_height": 1080,
    "image_width": 1920,
    "images_per_sample": 1,
}
# Allocator fragmentation and transient buffers: plan to fill at most this share of the card.
USABLE = 0.92
# CUDA context, cuBLAS/cuDNN workspaces and NCCL buffers: not tensors, but on the card.
CUDA_OVERHEAD = 1.0 * GIB
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass
class Counts:
    """What the parameter tensors of one model hold."""

    weight_bytes: int
    trainable_bytes: int
    trainable_numel: int
    trainable_tensors: int
    total_numel: int
    largest_layer_bytes: int  # one decoder layer: what ZeRO-3 gathers at a time
    # Parameters one token passes through: all but the unrouted share of the MoE experts
    # (equal to total_numel for dense models). Memory follows total_numel, FLOPs this.
    active_numel: int = 0


@dataclass
class Estimate:
    parts: dict[str, int] = field(default_factory=dict)  # line -> bytes per GPU
    notes: list[str] = field(default_factory=list)
    seq_len: int = 0
    image_tokens: int = 0
    counts: Counts | None = None

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def model_config(model_cfg: Any):
    """The transformers config: a bundled copy for the known hub ids, else from the path."""
    from transformers import AutoConfig

    bundled = families.bundled_config(str(model_cfg.name_or_path))
    source = bundled.parent if bundled is not None else resolve_path(model_cfg.name_or_path)
    return AutoConfig.from_pretrained(source, trust_remote_code=model_cfg.get("trust_remote_code"))


def meta_model(cfg: Any):
    """The run's model without storage: same dtype, frozen parts and PEFT adapters as the run."""
    import torch
    from transformers import AutoModelForImageTextToText

    config = model_config(cfg.model)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(
            config, dtype=getattr(torch, cfg.model.dtype)
        )
        if cfg.model.get("freeze_vision"):
            freeze_vision(model)
        peft = peft_config(memory.of(cfg), config.model_type)
        if peft is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft)
    return model


def count(model: Any) -> Counts:
    params = list(model.parameters())  # tied weights appear once, as in the optimizer
    trainable = [p for p in params if p.requires_grad]
    total = sum(p.numel() for p in params)
    layer_bytes = 0
    for name, module in model.named_modules():
        if name.endswith(("layers.0", "blocks.0")):
            size = sum(p.numel() * p.element_size() for p in module.parameters())
            layer_bytes = max(layer_bytes, size)
    return Counts(
        weight_bytes=sum(p.numel() * p.element_size() for p in params),
        trainable_bytes=sum(p.numel() * p.element_size() for p in trainable),
        trainable_numel=sum(p.numel() for p in trainable),
        trainable_tensors=len(trainable),
        total_numel=total,
        largest_layer_bytes=layer_bytes,
        active_numel=total - _idle_expert_numel(model),
    )


def _idle_expert_numel(model: Any) -> int:
    """Routed-expert parameters a token does not use: (1 - top_k / experts) of them.

    transformers keeps each MoE layer's routed experts as stacked tensors in a module named
    `experts` (Qwen3-VL-MoE, Qwen3.5-MoE, GLM-4.5V); shared experts live elsewhere and always run.
    """
    text = model.config.get_text_config()
    # Qwen's configs say `num_experts`; DeepSeek-style ones (GLM-4.5V) `n_routed_experts`.
    experts = getattr(text, "num_experts", None) or getattr(text, "n_routed_experts", None)
    top_k = getattr(text, "num_experts_per_tok", None)
    if not experts or not top_k:
        return 0
    routed = sum(p.numel() for name, p in model.named_parameters() if ".experts." in f".{name}")
    return int(routed * (1 - top_k / experts))


def image_tokens(model_cfg: Any, config: Any, height: int, width: int) -> int:
    """LLM tokens for one image, as the model's family counts them from its config (Qwen:
    `smart_resize` at the configured pixel budget; Gemma 3: its fixed `mm_tokens_per_image`)."""
    family = families.of_model_type(config.model_type)
    return int(family.load("config_image_tokens")(model_cfg, config, width, height))


def world_size(launcher: Any) -> int:
    """GPUs (ranks) of the run. `launcher.num_processes` is already the total over all
    machines: accelerate starts `num_processes // num_machines` ranks on each machine
    (`accelerate.utils.launch.prepare_multi_gpu_env`), so 16 processes on 2 machines are 16."""
    return int(launcher.get("num_processes", 1) or 1)


def zero_settings(cfg: Any) -> tuple[int, bool, bool, int]:
    """(ZeRO stage, optimizer offloaded, parameters offloaded, world size) of the run."""
    held = memory.of(cfg)
    return (
        held.zero_stage,
        held.offloaded("optimizer"),
        held.offloaded("param"),
        world_size(cfg.launcher),
    )


def estimate(cfg: Any, plan: dict) -> Estimate:
    """Bytes per GPU for the run `cfg`; `plan` holds the planner's own knobs (see plan.py)."""
    model = meta_model(cfg)
    counts = count(model)
    text = model.config.get_text_config()
    out = Estimate(counts=counts)
    stage, offload_opt, _, world = zero_settings(cfg)
    algo = algorithm.of(cfg)
    d = DTYPE_BYTES[cfg.model.dtype]
    shard = lambda n, from_stage: n // world if stage >= from_stage else n  # noqa: E731

    out.parts["weights"] = _weights(model, counts, cfg, out.notes)
    # Gradients: one per trainable element in the parameter's dtype (DeepSpeed: bf16/fp32 as
    # the parameter), partitioned from ZeRO-2 on.
    out.parts["gradients"] = shard(counts.trainable_bytes, 2)
    out.parts["optimizer"] = _optimizer(cfg, counts, stage, offload_opt, shard, out.notes)
    prompt, completion, rows = _sequence(cfg, model, plan, out)
    if algo.kind == "kto":
        out.parts["no-grad passes (KL, reference)"] = no_grad_passes(
            cfg, text, rows, out.seq_len, d
        )
    # Reference model (algo.reference: DPO, PPO, GRPO with beta != 0): a frozen copy, unless
    # PEFT can disable its adapters instead.
    if algo.uses_reference() and memory.of(cfg).peft is None:
        ref = counts.total_numel * d
        out.parts["reference model"] = (
            ref // world + counts.largest_layer_bytes if stage == 3 else ref
        )
    if algo.generates:
        out.parts.update(_generation(cfg, text, prompt, completion, d, plan))
    if plan.get("device", "cuda") == "cuda":
        out.parts["CUDA context + workspaces"] = int(CUDA_OVERHEAD)
    return out


def _optimizer(
    cfg: Any, counts: Counts, stage: int, offload_opt: bool, shard: Any, notes: list[str]
) -> int:
    """Bytes of optimizer state per GPU. Torch AdamW keeps exp_avg and exp_avg_sq in the
    parameter's dtype plus one fp32 `step` per tensor; DeepSpeed keeps fp32 master weights +
    both moments (12 B per element); bitsandbytes 8-bit Adam keeps two uint8 moments + one
    fp32 absmax per 256."""
    if stage >= 0:
        master = 4 if cfg.model.dtype != "float32" else 0
        states = counts.trainable_numel * (8 + master)
        if offload_opt:
            notes.append("optimizer states offloaded to CPU memory")
        return 0 if offload_opt else shard(states, 1)
    if memory.of(cfg).eight_bit_optimizer:
        return int(counts.trainable_numel * (2 + 8 / 256))
    return 2 * counts.trainable_bytes + 4 * counts.trainable_tensors


def _sequence(cfg: Any, model: Any, plan: dict, out: Estimate) -> tuple[int, int, int]:
    """Text + image tokens (+ the completion when the algorithm generates) per row, and the
    activations they cost; sets `out.image_tokens`, `out.seq_len` and the activations part.
    Returns (prompt tokens, completion tokens, rows per micro-batch)."""
    algo = algorithm.of(cfg)
    n_images = int(plan.get("images_per_sample", 1))
    per_image = image_tokens(cfg.model, model.config, plan["image_height"], plan["image_width"])
    out.image_tokens = per_image * n_images
    prompt = int(plan["text_tokens"]) + out.image_tokens
    completion = algo.completion_budget()
    out.seq_len = prompt + completion
    rows = int(cfg.train.per_device_train_batch_size) * algo.sequences_per_record()
    # env=: the images the tools return sit inside the completion budget (TRL cuts there) but
    # go through the vision tower too, at most env.max_image_tokens of them per row.
    env = environments.of(cfg.get("env"))
    tool_images = 0
    if env is not None:  # the family of the model built here, as `image_tokens` counts it
        tool_images = environments.limits(env, families.of_model(model), cfg.model).max_image_tokens
    if tool_images:
        out.notes.append(f"tool images: up to {tool_images} image tokens per row (env)")
    out.parts["activations"] = _activations(
        cfg,
        model.config.get_text_config(),
        model.config.vision_config,
        rows,
        out.seq_len,
        out.image_tokens + tool_images,
        DTYPE_BYTES[cfg.model.dtype],
    )
    return prompt, completion, rows


def _weights(model: Any, counts: Counts, cfg: Any, notes: list[str]) -> int:
    """Bytes of weights per GPU. 4-bit quantization stores the language model's linear layers
    in NF4 with one fp32 absmax per 64 weights (double-quantized to 8 bits), i.e. ~0.52 bytes
    per weight; ZeRO-3 holds 1/N of them plus the layer it gathers."""
    stage, _, offload_param, world = zero_settings(cfg)
    d = DTYPE_BYTES[cfg.model.dtype]
    weights = counts.weight_bytes
    if memory.of(cfg).quantization is not None:
        linear = _language_linear_numel(model, families.of_model(model).language_module)
        weights -= linear * d - int(linear * (0.5 + 1 / 64 + 4 / (64 * 256)))
        notes.append("4-bit weights: NF4 + double-quantized absmax (~0.52 B per weight)")
    if offload_param and stage == 3:
        notes.append("ZeRO-3 parameter offload: only the gathered layers stay on the GPU")
        return counts.largest_layer_bytes * 2
    if stage == 3:
        notes.append("ZeRO-3: 1/N of the weights plus one gathered decoder layer")
        return weights // world + counts.largest_layer_bytes
    return weights


def _language_linear_numel(model: Any, language_module: str) -> int:
    import torch

    return sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and language_module in name
    )


# Activations are a model, calibrated against the peaks measured on one H200 (issue #17:
# torch 2.11, transformers 5.24, TRL 1.16, a random-weight Qwen2.5-VL-3B through
# `python -m vlexp`, 315-token SFT rows = 59 text + 256 image tokens; GRPO 2 prompts x 8
# completions of 256 tokens, beta 0.04). The structural count below (`_activations`) fell
# short of every full fine-tuning peak by the same factor: SFT batch 8 (61.1 GiB measured)
# x1.38, GRPO (124.6 GiB) x1.40, GRPO + gradient checkpointing (41.8 GiB, a small term)
# x1.28. Its source was not isolated (candidates: GQA's k/v repeated for SDPA under a padding
# mask, autocast copies, allocator rounding), so the count is scaled by the fitted factor.
# With LoRA the frozen projections save no inputs, LoRA's own tensors (`_lora_saved`) come
# in instead, and the unscaled count matched the fourth measurement (SFT LoRA, 25.1 GiB)
# within 2%: no factor there. tests/unit/test_plan.py keeps all four within 10%.
FULL_FINETUNE_CALIBRATION = 1.39
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _activations(cfg, text, vision, rows: int, seq: int, image_tokens: int, d: int) -> int:
    """Saved-for-backward tensors of one micro-batch (SDPA/flash attention: no S^2 term).

    Decoder layer, per token: RMSNorm inputs kept in fp32 (2 x 4h bytes), and in the model
    dtype the normed inputs (2h), q and attention output (2h), k and v (2 kv), and the SwiGLU
    gate, up, act and product (4i; a MoE's routed experts: `routed_experts_saved`). Liger's
    fused RMSNorm/SwiGLU drop the fp32 copies and two of the four MLP tensors. Gradient checkpointing keeps only each layer's input (h) plus one
    layer recomputed at a time. TRL 1.16 computes log-probs through a tiled fused LM head, so
    the [rows x seq x vocab] logits never exist. The vision tower's activations count only when
    it trains (frozen by `freeze_vision` or PEFT: nothing needs its graph). Scaled by
    FULL_FINETUNE_CALIBRATION when the weights train (see above); LoRA adds `_lora_saved`.
    """
    h = text.hidden_size
    held = memory.of(cfg)
    layer = decoder_layer_bytes(cfg, text, d)
    layers = text.num_hidden_layers
    tokens = rows * seq
    if held.gradient_checkpointing:
        saved = tokens * (layers * d * h + layer)
    else:
        saved = tokens * layers * layer
    if held.peft is not None:
        lora = _lora_saved(held.peft, h, dense_mlp_width(text), d)
        saved += tokens * (lora if held.gradient_checkpointing else layers * lora)
    vision_trains = not cfg.model.get("freeze_vision") and held.peft is None
    if vision_trains and hasattr(vision, "spatial_merge_size"):
        hv = getattr(vision, "embed_dim", None) or vision.hidden_size
        iv = getattr(vision, "intermediate_size", None) or hv * getattr(vision, "mlp_ratio", 4)
        patches = rows * image_tokens * vision.spatial_merge_size**2
        block = d * (6 * hv + 4 * iv) + 8 * hv
        if held.gradient_checkpointing:
            saved += patches * (vision.depth * d * hv + block)
        else:
            saved += patches * vision.depth * block
    return int(saved if held.peft is not None else saved * FULL_FINETUNE_CALIBRATION)


def decoder_layer_bytes(cfg: Any, text: Any, d: int) -> int:
    """Bytes per token one decoder layer keeps for backward (see `_activations`)."""
    h = text.hidden_size
    kv = text.num_key_value_heads * head_dim(text)
    liger = memory.of(cfg).liger_kernel
    mlp = d * (2 if liger else 4) * dense_mlp_width(text) + routed_experts_saved(text, d)
    return d * (4 * h + 2 * kv) + mlp + (0 if liger else 8 * h)


def no_grad_passes(cfg: Any, text: Any, rows: int, seq: int, d: int) -> int:
    """KTO's extra forward passes: its KL estimate (each prompt with a neighbour's completion)
    and the reference's, all under `torch.no_grad()` (TRL 1.16 `KTOTrainer._compute_kl_logps`).
    Nothing is kept for backward, so only one layer's tensors of the micro-batch are alive at
    a time, on top of the policy pass's activations when the reference runs after it."""
    return rows * seq * decoder_layer_bytes(cfg, text, d)


def routed_experts_saved(text: Any, d: int) -> int:
    """Bytes per token a MoE layer's routed experts keep for backward (0 for a dense model).

    transformers' grouped-GEMM experts (`grouped_mm`, the default on a GPU) copy each token
    once per routed expert (top_k rows) and keep, per row: the gathered input (h), the
    gate+up output (2 i), the activation and the gated product (2 i), and the down output
    that the routing weight multiplies (h). Counting only `4 top_k i` as for a dense SwiGLU
    of the active width put the Qwen3-VL-30B-A3B SFT LoRA peak 20% low (79.6 planned,
    99.5 GiB measured on an H200); this count plans 92 GiB (-7.5%)."""
    experts, top_k = getattr(text, "num_experts", None), getattr(text, "num_experts_per_tok", None)
    width = getattr(text, "moe_intermediate_size", None)
    if not experts or not top_k or not width:
        return 0
    return d * top_k * (2 * text.hidden_size + 4 * width)


def _lora_saved(peft: Any, h: int, i: int, d: int) -> int:
    """Bytes per token and decoder layer LoRA keeps for backward: for each adapted projection
    its dropout mask (1 B) and dropped input (d B) per input feature when lora_dropout > 0,
    else the inputs themselves (shared by q/k/v and by gate/up: about 2h + i), plus A's
    rank-r output. Inputs: h for the attention and gate/up projections, i for down_proj.
    `i` is the width of the MLP's Linear layers: 0 for routed experts only (their weights
    are stacked 3-D tensors that `target_modules` names do not reach)."""
    target = str(peft.get("target_modules"))
    mlp = ("gate_proj", "up_proj", "down_proj")
    names = [name for name in PROJECTIONS if name in target and (i or name not in mlp)]
    rank = int(peft.get("r", 8)) * d * len(names)
    if float(peft.get("lora_dropout") or 0.0) > 0:
        return (1 + d) * sum(i if name == "down_proj" else h for name in names) + rank
    return d * (2 * h + i) + rank


def _generation(cfg, text, prompt: int, completion: int, d: int, plan: dict) -> dict[str, int]:
    """GRPO rollouts: the HF generate KV cache, or vLLM's reserved share when colocated."""
    args = cfg.algo.args
    if args.get("use_vllm"):
        if args.get("vllm_mode", "server") == "colocate":
            share = float(args.get("vllm_gpu_memory_utilization", 0.3))
            return {"vLLM (colocate) reservation": int(share * plan["gpu_mem_gb"] * GIB)}
        return {}  # a separate vLLM server holds its own GPUs
    steps = args.get("steps_per_generation") or cfg.train.gradient_accumulation_steps
    rows = int(cfg.train.per_device_train_batch_size) * int(steps) * _oversample(cfg.algo)
    per_token = 2 * attention_layers(text) * text.num_key_value_heads * head_dim(text) * d
    return {"generation KV cache": rows * (prompt + completion) * per_token}


def _oversample(algo: Any) -> int:
    """DAPO's dynamic sampling generates this many times the batch's prompts at once."""
    node = algo.get("dynamic_sampling")
    return int(node.get("oversample", 3)) if node and node.get("enabled", False) else 1


def head_dim(text: Any) -> int:
    """Attention head size: explicit in Qwen3/Qwen3.5/Gemma configs (not hidden / heads)."""
    return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads


def dense_mlp_width(text: Any) -> int:
    """Intermediate units of the MLP's Linear layers: the dense MLP, or a MoE's shared expert
    (0 when it has none: its routed experts are stacked tensors, not Linear layers)."""
    if getattr(text, "num_experts", None) and getattr(text, "moe_intermediate_size", None):
        return int(getattr(text, "shared_expert_intermediate_size", 0) or 0)
    return int(text.intermediate_size)


def attention_layers(text: Any) -> int:
    """Layers that keep a KV cache: Qwen3.5's Gated-DeltaNet (`linear_attention`) layers hold
    a fixed-size state instead, so only its `full_attention` layers count."""
    layer_types = getattr(text, "layer_types", None)
    if not layer_types:
        return text.num_hidden_layers
    return sum(1 for kind in layer_types if kind != "linear_attention")


def gib(n: float) -> str:
    return f"{n / GIB:7.2f} GiB" if n >= GIB / 100 or n == 0 else f"{n / 1024**2:7.2f} MiB"
