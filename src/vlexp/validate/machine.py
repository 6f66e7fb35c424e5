"""Checks of this machine (packages, CUDA, a compiler), not of what the config says: options
that stop here, before any model loads, when this machine cannot honour them.

`validate(cfg, machine=False)` skips them, e.g. when `python -m vlexp.plan` plans a GPU job on
a laptop. torch is imported only when a check needs to know about CUDA.
"""

from __future__ import annotations

import importlib.util
import shutil

from omegaconf import DictConfig

from vlexp.data.videos import Budget, backend_problems
from vlexp.runplan import RunPlan


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _runs_on_cpu(cfg: DictConfig) -> bool:
    use_cpu = cfg.train.get("use_cpu")
    return bool(use_cpu) if use_cpu is not None else not _cuda_available()


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _bitsandbytes_missing(cfg: DictConfig) -> list[str]:
    """What a bitsandbytes feature (4-bit weights, 8-bit optimizers) lacks on this run."""
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install 'vlexp[gpu]')")
    if _runs_on_cpu(cfg):
        missing.append("a CUDA GPU (none is visible, or train.use_cpu=true)")
    return missing


def check_quantization(cfg: DictConfig) -> list[str]:
    if cfg.memory.get("quantization") is None:
        return []
    missing = _bitsandbytes_missing(cfg)
    if missing:
        return [
            f"memory.quantization (QLoRA, 4-bit) needs {' and '.join(missing)}: "
            "use memory=lora for a CPU run"
        ]
    return []


def check_bf16(cfg: DictConfig) -> list[str]:
    if cfg.train.get("bf16") and _runs_on_cpu(cfg):
        return [
            "train.bf16=true on a CPU run (no CUDA device visible, or train.use_cpu=true): set "
            "train.bf16=false, or train.bf16=null to follow model.dtype on a GPU"
        ]
    return []


def check_vllm(cfg: DictConfig) -> list[str]:
    """`algo.args.use_vllm=true` needs the vllm package and a CUDA GPU: say so before loading."""
    args = cfg.algo.args
    if not args.get("use_vllm"):
        return []
    mode = args.get("vllm_mode", "colocate")
    if mode not in ("colocate", "server"):
        return [f"algo.args.vllm_mode={mode}: must be one of colocate, server"]
    off = "or set algo.args.use_vllm=false (generation with transformers)"
    if importlib.util.find_spec("vllm") is None:
        return [
            f"algo.args.use_vllm=true (vllm_mode={mode}) needs the vllm package, which is not "
            f"installed: pip install 'vlexp[gpu]' on a CUDA machine, {off}"
        ]
    if not _cuda_available():
        return [
            f"algo.args.use_vllm=true (vllm_mode={mode}) needs a CUDA GPU and none is visible "
            f"on this machine: run on a GPU node, {off}"
        ]
    return []


def check_rollout_machine(cfg: DictConfig) -> list[str]:
    """rollout=vllm_*: vllm installed, in the range TRL supports, on a CUDA machine;
    rollout.compile=true: a C/C++ compiler for torch inductor."""
    from vlexp import rollout
    from vlexp.rollout import vllm

    settings = rollout.of(cfg)
    if settings.engine == "vllm":
        check_version = (settings.vllm or {}).get("check_version", True)
        return vllm.machine_problems(settings.name, _cuda_available(), bool(check_version))
    if settings.static_cache and settings.compile is True and not _has_compiler():
        return [
            "rollout.compile=true needs a C/C++ compiler for torch inductor and none is on PATH: "
            "install one (e.g. `apt-get install g++`) or set rollout.compile=auto (CUDA only)"
        ]
    return []


def _has_compiler() -> bool:
    return any(shutil.which(cc) for cc in ("cc", "gcc", "c++", "clang"))


ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")

FLASH_PACKAGE = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def check_attention(cfg: DictConfig) -> list[str]:
    """model.attn_implementation: a kernel transformers knows, installed, on a GPU if it needs one."""
    impl = cfg.model.get("attn_implementation") or "sdpa"
    if impl not in ATTENTION:
        return [
            f"model.attn_implementation={impl} is not one of {', '.join(ATTENTION)} (sdpa is the default)"
        ]
    if impl not in FLASH_PACKAGE:
        return []
    if not _installed(FLASH_PACKAGE[impl]):
        return [
            f"model.attn_implementation={impl} needs the flash-attn package, which is not "
            "installed: `pip install flash-attn --no-build-isolation` on a CUDA machine, or use "
            "model.attn_implementation=sdpa"
        ]
    if not _cuda_available():
        return [
            f"model.attn_implementation={impl} runs on CUDA GPUs only and none is visible: "
            "use model.attn_implementation=sdpa"
        ]
    return []


def check_liger(cfg: DictConfig) -> list[str]:
    """memory.liger_kernel (memory=liger): Liger's Triton kernels need the package and CUDA."""
    if not cfg.memory.get("liger_kernel"):
        return []
    if not _installed("liger_kernel"):
        return [
            "memory.liger_kernel=true (memory=liger) needs liger-kernel, which is not installed: "
            "`pip install liger-kernel` (or `pip install 'vlexp[gpu]'`), or pick another memory preset"
        ]
    if not _cuda_available():
        return [
            "memory.liger_kernel=true (memory=liger) runs Triton kernels on CUDA GPUs only and "
            "none is visible: pick another memory preset (e.g. memory=none) on this machine"
        ]
    return []


def check_torch_compile(cfg: DictConfig) -> list[str]:
    """train.torch_compile: inductor builds C++ (CPU) or Triton launchers (GPU) with a compiler."""
    wanted = cfg.train.get("torch_compile") or cfg.algo.args.get("torch_compile")
    if wanted and not any(shutil.which(cc) for cc in ("cc", "gcc", "c++", "clang")):
        return [
            "train.torch_compile=true needs a C/C++ compiler for torch inductor and none is on "
            "PATH: install one (e.g. `apt-get install g++`) or set train.torch_compile=false"
        ]
    return []


# transformers optimizer names implemented by bitsandbytes (CUDA only).
BNB_OPTIMIZERS = frozenset(
    {"adamw_bnb_8bit", "adamw_8bit", "paged_adamw", "paged_adamw_8bit", "ademamix"}
    | {"ademamix_8bit", "paged_ademamix", "paged_ademamix_8bit", "lion_8bit", "lion_32bit"}
    | {"paged_lion_8bit", "paged_lion_32bit", "rmsprop_bnb", "rmsprop_bnb_8bit"}
    | {"rmsprop_bnb_32bit"}
)


def check_optimizer(cfg: DictConfig) -> list[str]:
    """8-bit (bitsandbytes) optimizers need CUDA and bitsandbytes, like QLoRA."""
    optim = cfg.memory.get("optim") or (cfg.algo.get("args") or {}).get("optim")
    if optim not in BNB_OPTIMIZERS:
        return []
    missing = _bitsandbytes_missing(cfg)
    if missing:
        return [
            f"the 8-bit optimizer '{optim}' (memory=adamw_8bit, or optim) needs "
            f"{' and '.join(missing)}: drop it for a CPU run"
        ]
    return []


def check_video_backend(cfg: DictConfig) -> list[str]:
    """data.video.backend: a known reader whose package is installed here."""

    return backend_problems(Budget.from_config(cfg.data.get("video")))


def check_model_source(cfg: DictConfig) -> list[str]:
    """model.name_or_path is a local dir, tiny://, cached, or the hub is reachable."""
    from vlexp.models.loading import source_problem

    problem = source_problem(str(cfg.model.name_or_path))
    return [problem] if problem else []


def check_bench_machine(cfg: DictConfig, plan: RunPlan) -> list[str]:
    """bench= with train.eval_steps: lmms-eval installed, a judge's key set, the data cached
    when the hub is offline (vlexp.evaluation.bench.check), before the model loads."""
    from vlexp.evaluation import bench

    if not cfg.train.get("eval_steps"):
        return []
    try:
        bench.check(cfg.get("bench"), plan.family)
    except bench.BenchError as err:
        return [str(err)]
    return []
