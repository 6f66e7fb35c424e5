"""What each rank holds: `distributed.json` in the run dir, written by rank 0.

Proof that sharding happened (and a first stop when memory is not what you expected): per
rank, the parameter elements of the full model (`ds_numel` under ZeRO-3) and those stored
locally, plus the optimizer's fp32 master elements held on that rank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class ShardReport(TrainerCallback):
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "distributed.json"

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        import torch.distributed as dist

        row = {"rank": args.process_index, **held_elements(model), **_optimizer_elements(optimizer)}
        rows = [row]
        if dist.is_available() and dist.is_initialized():
            rows = [None] * dist.get_world_size()
            dist.all_gather_object(rows, row)
        if state.is_world_process_zero:
            ds_config = getattr(args, "hf_deepspeed_config", None)
            stage = (
                ds_config.config.get("zero_optimization", {}).get("stage") if ds_config else None
            )
            report = {"world_size": len(rows), "zero_stage": stage, "ranks": rows}
            self.path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def held_elements(model) -> dict[str, int]:
    """Full and locally stored parameter elements (they differ only under ZeRO-3)."""
    full = local = 0
    for param in model.parameters():
        if hasattr(param, "ds_numel"):  # a ZeRO-3 parameter: the data lives in ds_tensor
            full += param.ds_numel
            local += param.ds_tensor.numel()
        else:
            full += param.numel()
            local += param.numel()
    return {"param_numel": full, "local_param_numel": local}


def _optimizer_elements(optimizer) -> dict[str, Any]:
    # Under DeepSpeed the trainer's optimizer wraps the ZeRO optimizer, which keeps this
    # rank's fp32 master partition in one of these lists (stage 1/2, stage 3).
    inner = getattr(optimizer, "optimizer", optimizer)
    for attr in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat"):
        groups = getattr(inner, attr, None)
        if groups:
            return {"local_optimizer_numel": int(sum(t.numel() for t in groups))}
    return {}
