"""`rollout=vllm_colocate | vllm_server`: TRL's vLLM generation, wired and checked before
anything loads.

TRL 1.16 owns the vLLM integration (weights pushed to vLLM, LoRA merged first, sleep mode,
importance-sampling correction of the vLLM/trainer mismatch); vlexp hands it the arguments
and refuses, with the fix, what would fail later: vllm missing or outside the versions TRL
supports (trl.import_utils.is_vllm_available: 0.22.0-0.31.0), no CUDA device, a GPU share
outside (0, 1), a server address that does not parse.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger("vlexp")

# The vLLM versions TRL 1.16 accepts (trl/import_utils.py, is_vllm_available); contract:
# tests/unit/test_rollout.py reads them back from TRL's source.
VLLM_RANGE = ("0.22.0", "0.31.0")
# Limits of the planned colocate share: vLLM needs room for weights and a KV cache, and
# training keeps the rest.
SHARE_RANGE = (0.1, 0.9)


def trainer_args(vllm_cfg: dict, fields: set[str], planned: float | None = None) -> dict:
    """The `vllm_*` arguments of TRL's config (only those `fields` has)."""
    mode = vllm_cfg.get("mode", "colocate")
    wanted: dict[str, Any] = {
        "use_vllm": True,
        "vllm_mode": mode,
        "vllm_importance_sampling_correction": bool(
            vllm_cfg.get("importance_sampling_correction", True)
        ),
    }
    if mode == "colocate":
        share = vllm_cfg.get("gpu_memory_utilization", "auto")
        wanted["vllm_gpu_memory_utilization"] = float(planned if share == "auto" else share)
        wanted["vllm_enable_sleep_mode"] = bool(vllm_cfg.get("enable_sleep_mode", True))
        wanted["vllm_tensor_parallel_size"] = int(vllm_cfg.get("tensor_parallel_size", 1))
        if vllm_cfg.get("max_model_length") is not None:
            wanted["vllm_max_model_length"] = int(vllm_cfg["max_model_length"])
    else:
        wanted["vllm_server_base_url"] = vllm_cfg.get("base_url")
        wanted["vllm_server_host"] = str(vllm_cfg.get("host", "0.0.0.0"))
        wanted["vllm_server_port"] = int(vllm_cfg.get("port", 8000))
        wanted["vllm_server_timeout"] = float(vllm_cfg.get("timeout_s", 240))
    return {k: v for k, v in wanted.items() if k in fields}


def planned_share(cfg: Any, gpu_bytes: int | None = None) -> float:
    """The share of the GPU vLLM may take: what the planner's training estimate (without
    vLLM's own reservation) leaves of the usable memory, clamped to SHARE_RANGE."""
    from omegaconf import OmegaConf

    from vlexp.recipe.estimate import GIB, PLAN_DEFAULTS, USABLE, estimate

    if gpu_bytes is None:
        import torch

        gpu_bytes = torch.cuda.get_device_properties(0).total_memory
    plan = {**PLAN_DEFAULTS, "gpu_mem_gb": gpu_bytes / GIB}
    # The estimate of training alone: vLLM's reservation is what this function decides.
    training = OmegaConf.merge(cfg, {"algo": {"args": {"use_vllm": False}}})
    try:
        est = estimate(training, plan)
    except Exception as err:  # a model the planner cannot price: TRL's default share
        log.warning("rollout.vllm.gpu_memory_utilization=auto: the planner failed (%s); 0.3", err)
        return 0.3
    kv_cache = est.parts.get("generation KV cache", 0)  # vLLM holds the rollouts' cache
    left = USABLE - (est.total - kv_cache) / gpu_bytes
    if left < SHARE_RANGE[0]:
        log.warning(
            "rollout.vllm.gpu_memory_utilization=auto: the planner leaves %.0f%% of the GPU to "
            "vLLM; it gets %.0f%%, which may not fit. Free memory for it (memory=lora, "
            "memory=grad_ckpt) or set the share yourself",
            max(left, 0.0) * 100,
            SHARE_RANGE[0] * 100,
        )
    return round(min(max(left, SHARE_RANGE[0]), SHARE_RANGE[1]), 2)


def problems(cfg: Any, algo_fields: set[str] | None) -> list[str]:
    """What in the config stops `rollout.engine=vllm` before anything loads."""
    rollout = cfg.rollout
    vllm_cfg = rollout.get("vllm") or {}
    name = rollout.get("name")
    mode = vllm_cfg.get("mode", "colocate")
    found = []
    if mode not in ("colocate", "server"):
        return [f"rollout.vllm.mode={mode}: must be colocate or server"]
    if algo_fields is not None and "use_vllm" not in algo_fields:
        found.append(
            f"rollout={name}: algo={cfg.algo.get('name')} has no vLLM generation "
            f"({cfg.algo.args.get('_target_')} takes no use_vllm); use rollout=hf_fast"
        )
    share = vllm_cfg.get("gpu_memory_utilization", "auto")
    if mode == "colocate" and share != "auto" and not 0.0 < float(share) < 1.0:
        found.append(
            f"rollout.vllm.gpu_memory_utilization={share}: a share of the GPU between 0 and 1 "
            "(e.g. 0.3), or auto for what the planner leaves free"
        )
    if mode == "server":
        found += _server_problems(vllm_cfg)
    return found


def _server_problems(vllm_cfg: Any) -> list[str]:
    url = vllm_cfg.get("base_url")
    if url is not None:
        parsed = urlparse(str(url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            return [
                f"rollout.vllm.base_url={url}: not an http(s) address with a host, e.g. "
                "http://gpu-node-7:8000 (the `trl vllm-serve` server)"
            ]
        return []
    port = vllm_cfg.get("port", 8000)
    if not isinstance(port, int) or not 0 < port < 65536:
        return [f"rollout.vllm.port={port}: a TCP port 1-65535 (trl vllm-serve's --port)"]
    if not vllm_cfg.get("host"):
        return ["rollout.vllm.host is empty: the host running `trl vllm-serve` (or base_url)"]
    return []


def machine_problems(name: str, cuda: bool, check_version: bool = True) -> list[str]:
    """What this machine lacks for vLLM: the package, in TRL's range (unless `check_version`
    is off: TRL itself only warns), and a CUDA device."""
    from packaging.version import Version

    low, high = VLLM_RANGE
    fix = f"pip install 'vllm>={low},<={high}', or use rollout=hf_fast (no vLLM)"
    if importlib.util.find_spec("vllm") is None:
        return [f"rollout={name} needs the vllm package, which is not installed: {fix}"]
    version = Version(Version(importlib.metadata.version("vllm")).base_version)
    if check_version and not Version(low) <= version <= Version(high):
        return [
            f"rollout={name}: vllm {version} is installed; TRL 1.16 supports vllm {low} to "
            f"{high}: {fix} (or rollout.vllm.check_version=false to try it anyway)"
        ]
    if not cuda:
        return [f"rollout={name} needs a CUDA GPU and none is visible: use rollout=hf_fast"]
    return []
