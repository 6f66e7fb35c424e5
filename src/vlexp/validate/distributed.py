"""Multi-process and multi-machine launch, and DeepSpeed combinations that cannot work."""

from __future__ import annotations

from omegaconf import DictConfig


def check_launcher(cfg: DictConfig) -> list[str]:
    launcher = cfg.launcher
    processes = int(launcher.get("num_processes", 1))
    machines = int(launcher.get("num_machines", 1) or 1)
    problems = []
    if processes < 1 or processes % machines:
        problems.append(
            f"launcher.num_processes={processes} is the total over all machines and must be a "
            f"positive multiple of launcher.num_machines={machines}"
        )
    if machines > 1 and not (launcher.get("main_process_ip") and launcher.get("main_process_port")):
        problems.append(
            f"launcher.num_machines={machines} needs launcher.main_process_ip (the address "
            "of machine_rank 0) and a fixed launcher.main_process_port, the same on every machine"
        )
    if not 0 <= int(launcher.get("machine_rank", 0) or 0) < machines:
        problems.append(
            f"launcher.machine_rank={launcher.machine_rank} must be in 0..{machines - 1}"
        )
    return problems


def check_deepspeed(cfg: DictConfig) -> list[str]:
    """Combinations of memory.deepspeed with QLoRA or vLLM that cannot work, and what to use."""
    deepspeed = cfg.memory.get("deepspeed")
    if deepspeed is None:
        return []
    zero = deepspeed.get("zero_optimization") or {}
    stage = int(zero.get("stage", 0))
    quantization = cfg.memory.get("quantization")
    problems = []
    if quantization is not None and stage == 3:
        if (zero.get("offload_param") or {}).get("device", "none") != "none":
            problems.append(
                "4-bit (QLoRA) weights cannot be offloaded by ZeRO-3 (offload_param): use "
                "memory=[qlora,zero3] or memory=[qlora,zero2] instead of zero3_offload"
            )
        elif quantization.get("bnb_4bit_quant_storage") != cfg.model.dtype:
            problems.append(
                "QLoRA under ZeRO-3 shards the 4-bit weights only when they are stored in the "
                f"model dtype: set memory.quantization.bnb_4bit_quant_storage={cfg.model.dtype} "
                f"(now {quantization.get('bnb_4bit_quant_storage')}), or use memory=[qlora,zero2]"
            )
    args = cfg.algo.get("args") or {}
    if args.get("use_vllm") and stage == 3 and args.get("ds3_gather_for_generation") is False:
        problems.append(
            "vLLM generation needs the full weights gathered under ZeRO-3: set "
            "algo.args.ds3_gather_for_generation=true, or use memory=zero2, or "
            "algo.args.use_vllm=false"
        )
    return problems
