"""The one reader of the `memory` config node: how the model, its gradients and optimizer
states are held. The trainer args (`recipe.run`), the model loader, the planner and the
config checks all read the node through `of(cfg)`, so they cannot disagree (before, the
planner priced `memory=adamw_8bit` as full AdamW because it read only `algo.args.optim`).

    memory:
      peft: {_target_: peft.LoraConfig, ...}      # LoRA (memory=lora / qlora)
      quantization: {_target_: transformers.BitsAndBytesConfig, ...}   # 4-bit (qlora)
      gradient_checkpointing: true                # grad_ckpt
      liger_kernel: true                          # liger
      optim: adamw_8bit                           # adamw_8bit (wins over algo.args.optim)
      deepspeed: {zero_optimization: {stage: 3, ...}}   # zero2 / zero3 / zero3_offload
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_OPTIM = "adamw_torch_fused"  # transformers' TrainingArguments default


@dataclass(frozen=True)
class Memory:
    peft: Any
    quantization: Any
    gradient_checkpointing: bool
    liger_kernel: bool
    optim: str
    optim_set: bool
    deepspeed: dict | None

    @property
    def zero_stage(self) -> int:
        """DeepSpeed ZeRO stage; -1 without DeepSpeed."""
        if self.deepspeed is None:
            return -1
        return int((self.deepspeed.get("zero_optimization") or {}).get("stage", 0))

    def offloaded(self, what: str) -> bool:
        """`what` ('optimizer' or 'param') offloaded to CPU or NVMe by ZeRO."""
        zero = (self.deepspeed or {}).get("zero_optimization") or {}
        return (zero.get(f"offload_{what}") or {}).get("device", "none") in ("cpu", "nvme")

    @property
    def eight_bit_optimizer(self) -> bool:
        """bitsandbytes' 8-bit optimizers (adamw_8bit, paged_adamw_8bit, ...)."""
        return "8bit" in self.optim


def of(cfg: Any) -> Memory:
    """The memory settings of a run: `memory.*`, with `memory.optim` over `algo.args.optim`."""
    from omegaconf import OmegaConf

    memory = cfg.get("memory") or {}
    args = (cfg.get("algo") or {}).get("args") or {}
    optim = memory.get("optim") or args.get("optim")
    deepspeed = memory.get("deepspeed")
    if deepspeed is not None and OmegaConf.is_config(deepspeed):
        deepspeed = OmegaConf.to_container(deepspeed, resolve=True)
    return Memory(
        peft=memory.get("peft") or None,
        quantization=memory.get("quantization"),
        gradient_checkpointing=bool(memory.get("gradient_checkpointing")),
        liger_kernel=bool(memory.get("liger_kernel")),
        optim=str(optim or DEFAULT_OPTIM),
        optim_set=optim is not None,
        deepspeed=deepspeed,
    )
