"""One rank of a multi-process run, started by vlexp.recipe.launch:

    accelerate launch --multi_gpu --num_processes 2 -m vlexp.worker RUN_DIR/config.resolved.yaml

No Hydra here: the parent composed and resolved the config once, so every rank runs exactly
the same values into the same run dir (the resolved file's folder).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from vlexp.recipe import stops
from vlexp.recipe.launch import free_port


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m vlexp.worker RUN_DIR/config.resolved.yaml")
    config_path = Path(argv[0]).resolve()
    cfg = OmegaConf.load(config_path)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s",
    )
    from vlexp.validate import torch_stack

    mismatch = torch_stack.problem()  # before transformers imports torchvision and fails
    if mismatch:
        raise SystemExit(mismatch)
    import torch.distributed as dist

    from vlexp.recipe import console
    from vlexp.recipe.run import train

    console.quiet_libraries()  # before DeepSpeed is imported: it warns at import
    if cfg.memory.get("deepspeed") is not None:
        init_deepspeed_group()
    try:
        train(cfg, config_path.parent)
    except Exception as err:  # the same one-line messages as a one-process run (app.py)
        line = stops.message(err)
        if line is None:
            raise
        raise SystemExit(line) from None
    finally:
        # Without this, gloo's shutdown aborted about one run in three (SIGABRT).
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def init_deepspeed_group() -> None:
    """The process group DeepSpeed needs before the trainer args (and ZeRO-3) are built.

    Under accelerate's torch.distributed launcher DeepSpeed reads the world size when the
    trainer args are built; without an initialised group it sees 1 rank and rejects the
    batch sizes. One process (accelerate's simple launcher) gets no rendezvous variables:
    it becomes a group of 1.
    """
    import deepspeed
    import torch

    for key, value in {"RANK": 0, "LOCAL_RANK": 0, "WORLD_SIZE": 1}.items():
        os.environ.setdefault(key, str(value))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


if __name__ == "__main__":
    from vlexp.light_exit import light_exit

    light_exit(main)
