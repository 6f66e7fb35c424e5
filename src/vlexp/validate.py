"""Checks that need no model: run before anything heavy is loaded.

Each check is a small function `cfg -> list of problems` (an empty list when the config is
fine). `validate` runs them all and raises one ConfigError listing every problem, so a user
fixes a config in one round trip. Checks import torch only when the key they guard is set.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Keyword arguments TRL's GRPOTrainer passes to every reward function itself; the others a
# reward names must be columns of the data set.
TRL_REWARD_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
    | {"environments"}
)
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


class ConfigError(ValueError):
    """A config that cannot run; the message names the keys and the fix."""


def validate(cfg: DictConfig, machine: bool = True) -> None:
    """Raise one ConfigError listing every combination that cannot work.

    `machine=False` skips the checks of this machine (packages, CUDA), e.g. when
    `python -m vlexp.plan` plans a GPU job on a laptop.
    """
    checks = CHECKS if machine else [c for c in CHECKS if c not in MACHINE_CHECKS]
    problems = [problem for check in checks for problem in check(cfg)]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("\n".join(["several problems:", *(f"  - {p}" for p in problems)]))


def check_pixels(cfg: DictConfig) -> list[str]:
    if cfg.model.min_pixels > cfg.model.max_pixels:
        return [
            f"model.min_pixels ({cfg.model.min_pixels}) > model.max_pixels ({cfg.model.max_pixels}): "
            "lower model.min_pixels or raise model.max_pixels (28x28 px = one image token)"
        ]
    return []


def check_grpo_reward(cfg: DictConfig) -> list[str]:
    if cfg.algo.kind == "grpo" and not reward_funcs(cfg):
        return ["GRPO needs at least one reward: add e.g. reward=[think_format,accuracy]"]
    return []


def check_generation_batch(cfg: DictConfig) -> list[str]:
    """TRL's GRPOConfig rules for the generation batch, with vlexp's key names."""
    if cfg.algo.kind != "grpo" or cfg.algo.name == "ppo":  # PPO: one completion per prompt
        return []
    args = cfg.algo.args
    generations = args.get("num_generations") or 8
    processes = cfg.launcher.get("num_processes", 1)
    batch = cfg.train.per_device_train_batch_size
    if generations < 2:
        return [f"algo.args.num_generations={generations}: GRPO needs at least 2 per prompt"]
    gen_batch, spg = args.get("generation_batch_size"), args.get("steps_per_generation")
    if gen_batch is not None and spg is not None:
        return [
            "algo.args.generation_batch_size and algo.args.steps_per_generation are both set: "
            "set only one of them"
        ]
    if gen_batch is not None:
        problems = []
        if gen_batch % (batch * processes):
            problems.append(
                f"algo.args.generation_batch_size={gen_batch} is not a multiple of "
                f"train.per_device_train_batch_size x launcher.num_processes = {batch * processes}"
            )
        if gen_batch % generations:
            problems.append(
                f"algo.args.generation_batch_size={gen_batch} is not a multiple of "
                f"algo.args.num_generations={generations}: change one so that it divides"
            )
        return problems
    if spg is not None:
        if (batch * processes * spg) % generations:
            return [
                f"train.per_device_train_batch_size x launcher.num_processes x "
                f"algo.args.steps_per_generation = {batch * processes * spg} is not a multiple of "
                f"algo.args.num_generations = {generations}: change one so that it divides"
            ]
        return []
    total = batch * cfg.train.gradient_accumulation_steps * processes
    if total % generations:
        return [
            f"train.per_device_train_batch_size x train.gradient_accumulation_steps x "
            f"launcher.num_processes = {total} is not a multiple of algo.args.num_generations "
            f"= {generations}: change one so that it divides"
        ]
    return []


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _runs_on_cpu(cfg: DictConfig) -> bool:
    use_cpu = cfg.train.get("use_cpu")
    return bool(use_cpu) if use_cpu is not None else not _cuda_available()


def check_quantization(cfg: DictConfig) -> list[str]:
    if cfg.memory.get("quantization") is None:
        return []
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install 'vlexp[gpu]')")
    if _runs_on_cpu(cfg):
        missing.append("a CUDA GPU (none is visible, or train.use_cpu=true)")
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


def check_rewards(cfg: DictConfig) -> list[str]:
    """Every reward `_target_` imports; a `_partial_` one has TRL's reward signature."""
    if cfg.algo.kind != "grpo":
        return []
    problems = []
    for name, node in reward_funcs(cfg).items():
        key = f"reward.funcs.{name}._target_"
        target = node.get("_target_")
        try:
            func = _locate(target)
        except Exception as err:  # any import failure is the user's to see, named
            problems.append(f"{key}={target} does not import: {err}")
            continue
        if node.get("_partial_"):
            problem = _signature_problem(func)
            if problem:
                problems.append(f"{key}={target}: {problem}")
    return problems


def check_choices(cfg: DictConfig) -> list[str]:
    """Keys with a closed set of values."""
    problems = []
    for key, value, allowed in (
        ("data.on_bad_record", cfg.data.get("on_bad_record", "raise"), ("raise", "skip")),
        ("train.on_nan", cfg.train.get("on_nan", "stop"), ("stop", "skip")),
        ("reward.on_error", (cfg.get("reward") or {}).get("on_error", "raise"), ("raise", "zero")),
    ):
        if value not in allowed:
            problems.append(f"{key}={value}: must be one of {', '.join(allowed)}")
    sample = cfg.data.get("check_sample")
    if sample is not None and (not isinstance(sample, int) or sample < 1):
        problems.append(
            f"data.check_sample={sample}: a positive number of records, or null for all"
        )
    return problems


def check_prompt_template(cfg: DictConfig) -> list[str]:
    template = cfg.data.get("prompt_template") or "{question}"
    try:
        template.format(question="?")
    except (KeyError, IndexError, ValueError) as err:
        return [
            f"data.prompt_template={template!r} cannot be filled ({type(err).__name__}: {err}): "
            "only {question} is replaced; write a literal brace as {{ or }}"
        ]
    return []


def check_ppo(cfg: DictConfig) -> list[str]:
    if cfg.algo.name != "ppo":
        return []
    batch, parts = cfg.train.per_device_train_batch_size, cfg.algo.args.num_mini_batches
    if batch % parts:
        return [
            f"train.per_device_train_batch_size ({batch}) is not a multiple of "
            f"algo.args.num_mini_batches ({parts}): each PPO rollout is split into equal mini-batches"
        ]
    return []


def check_reward_model_paths(cfg: DictConfig) -> list[str]:
    """reward=model and algo.args.critic_init name a trained reward model that exists."""
    places = []
    if cfg.algo.kind == "grpo" and "model" in reward_funcs(cfg):
        places.append((cfg.reward.funcs.model, "path", "reward.funcs.model.path"))
    if cfg.algo.args.get("critic_init"):
        places.append((cfg.algo.args, "critic_init", "algo.args.critic_init"))
    problems = []
    for node, key, where in places:
        if OmegaConf.is_missing(node, key):
            problems.append(f"reward=model needs {where}=<run dir of an algo=reward_model run>")
            continue
        path = Path(str(node[key])).expanduser()
        model_dir = path / "final" if (path / "final").is_dir() else path
        if not any((model_dir / f).exists() for f in ("config.json", "adapter_config.json")):
            problems.append(
                f"{where}={node[key]}: no trained model there (expected a run dir with final/, "
                "or a dir with config.json or adapter_config.json)"
            )
    return problems


def check_eval(cfg: DictConfig) -> list[str]:
    """train.eval_steps: an eval split, and decoding settings that mean what they say."""
    if not cfg.train.get("eval_steps"):
        return []
    from vlexp.evaluation.core import check

    problems = []
    if not cfg.data.get("eval"):
        problems.append(
            f"train.eval_steps={cfg.train.eval_steps} needs an eval split, but data.eval is not "
            "set: give data.eval=/path/to/eval.jsonl or drop train.eval_steps"
        )
    try:
        check(cfg.eval)
    except ValueError as err:
        problems.append(str(err))
    return problems


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


def check_resume(cfg: DictConfig) -> list[str]:
    resume = cfg.get("resume")
    if resume in (None, False, "", "auto"):
        return []
    path = Path(str(resume)).expanduser()
    if (path / "trainer_state.json").is_file():
        return []
    hint = "it does not exist" if not path.exists() else "it holds no trainer_state.json"
    return [
        f"resume={resume}: not a checkpoint ({hint}); give a checkpoint-N dir of a run, or "
        "resume=auto with hydra.run.dir=<the run dir> to continue from its newest checkpoint"
    ]


# --- fast paths: config options that stop here, before any model loads, when this machine
# or TRL 1.16 cannot honour them.

ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
FLASH_PACKAGE = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


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


def check_padding_free(cfg: DictConfig) -> list[str]:
    """SFT packing / padding-free and DPO padding-free are refused (or dropped) by TRL 1.16."""
    args = cfg.algo.args
    wants = args.get("packing") or args.get("padding_free")
    if cfg.algo.kind == "sft" and wants and _has_images(cfg.data):
        key = "packing" if args.get("packing") else "padding_free"
        return [
            f"algo.args.{key}=true: TRL 1.16's SFTTrainer refuses it for vision data sets "
            '("Packing is not supported for vision datasets" / "Padding-free training is yet '
            'not supported for vision datasets") and this data set has images: set '
            f"algo.args.{key}=false"
        ]
    if cfg.algo.kind == "dpo" and args.get("padding_free"):
        return [
            "algo.args.padding_free=true: TRL 1.16's DPOTrainer disables it "
            '("temporarily unavailable after a refactor") and would silently pad instead: '
            "set algo.args.padding_free=false"
        ]
    return []


def _has_images(data_cfg) -> bool:
    """Whether the training records carry images; `shapes` always does, JSONL is looked at."""
    if data_cfg.get("name") == "shapes":
        return True
    path = Path(str(data_cfg.get("train") or "")).expanduser()
    if not path.is_file():
        return True  # not readable yet: assume the common case, images
    with path.open(encoding="utf-8", errors="replace") as handle:
        return any('"image' in line for line in handle)


# Arguments TRL 1.16 removed or refuses for vision data, with what it offers instead. TRL
# would raise a bare TypeError/ValueError from deep inside the trainer; this answers first.
_MAX_LENGTH_ONLY = (
    "TRL 1.16 has only algo.args.max_length (prompt + completion); leave it null so no image "
    "token is ever cut"
)
REMOVED_ARGS: dict[tuple[str, str], str] = {
    ("sft", "max_seq_length"): "use algo.args.max_length (null never truncates)",
    ("dpo", "max_prompt_length"): _MAX_LENGTH_ONLY,
    ("dpo", "max_completion_length"): _MAX_LENGTH_ONLY,
    ("dpo", "rpo_alpha"): (
        "RPO is DPO plus an NLL term on the chosen answer: set "
        "'algo.args.loss_type=[sigmoid,sft]' 'algo.args.loss_weights=[1.0,ALPHA]'"
    ),
    ("dpo", "reference_free"): (
        "TRL 1.16's DPO always has a reference; for a reference-free objective use SimPO "
        "(trl.experimental.cpo.CPOTrainer with loss_type=simpo)"
    ),
    ("dpo", "padding_value"): "use algo.args.pad_token (a token string)",
    ("dpo", "label_pad_token_id"): "remove it: TRL masks labels with the completion mask",
    ("grpo", "max_prompt_length"): "remove it: TRL 1.16 does not truncate GRPO prompts",
}


def check_removed_args(cfg: DictConfig) -> list[str]:
    """`algo.args` keys TRL 1.16 removed, each with what it offers instead."""
    args = cfg.algo.get("args") or {}
    problems = [
        f"algo.args.{key} does not exist in TRL 1.16: {REMOVED_ARGS[cfg.algo.kind, key]}"
        for key in args
        if (cfg.algo.kind, key) in REMOVED_ARGS
    ]
    if cfg.algo.kind == "dpo" and args.get("precompute_ref_log_probs"):
        problems.append(
            "algo.args.precompute_ref_log_probs=true: TRL 1.16 refuses it for vision data sets. "
            "To save the reference model's memory use memory=lora: the adapter-disabled base "
            "then serves as the reference, with no second copy of the model"
        )
    return problems


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
    missing = []
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install 'vlexp[gpu]')")
    if _runs_on_cpu(cfg):
        missing.append("a CUDA GPU (none is visible, or train.use_cpu=true)")
    if missing:
        return [
            f"the 8-bit optimizer '{optim}' (memory=adamw_8bit, or optim) needs "
            f"{' and '.join(missing)}: drop it for a CPU run"
        ]
    return []


def check_video(cfg: DictConfig) -> list[str]:
    """data.video: frame and pixel limits that qwen-vl-utils cannot apply."""
    from vlexp.data.videos import Budget, budget_problems

    return budget_problems(Budget.from_config(cfg.data.get("video")))


def check_video_backend(cfg: DictConfig) -> list[str]:
    """data.video.backend: a known reader whose package is installed here."""
    from vlexp.data.videos import Budget, backend_problems

    return backend_problems(Budget.from_config(cfg.data.get("video")))


CHECKS: list[Callable[[DictConfig], list[str]]] = [
    check_choices,
    check_prompt_template,
    check_pixels,
    check_grpo_reward,
    check_generation_batch,
    check_rewards,
    check_quantization,
    check_optimizer,
    check_removed_args,
    check_bf16,
    check_vllm,
    check_ppo,
    check_reward_model_paths,
    check_eval,
    check_launcher,
    check_deepspeed,
    check_resume,
    check_padding_free,
    check_attention,
    check_liger,
    check_torch_compile,
    check_video,
    check_video_backend,
]
# What this machine has (packages, CUDA, a compiler), not what the config says.
MACHINE_CHECKS = {
    check_quantization,
    check_optimizer,
    check_bf16,
    check_vllm,
    check_attention,
    check_liger,
    check_torch_compile,
    check_video_backend,
}


def reward_funcs(cfg: DictConfig) -> dict:
    return dict((cfg.get("reward") or {}).get("funcs") or {})


def _locate(target: str | None):
    from hydra.utils import get_object

    if not target:
        raise ImportError("no _target_ given")
    return get_object(target)


def _signature_problem(func) -> str | None:
    if not callable(func):
        return f"is a {type(func).__name__}, not a function"
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None  # builtins without a signature: nothing to check
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return (
            "a reward must accept **kwargs (TRL passes prompts, completions, completion_ids and "
            "every data column as keywords): def my_reward(completions, **kwargs) -> list[float]"
        )
    return None


def reward_columns(cfg: DictConfig) -> dict[str, list[str]]:
    """Data columns each `_partial_` reward needs: its keyword parameters without a default.

    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create({"algo": {"kind": "grpo"},
    ...     "reward": {"funcs": {"accuracy": {"_target_": "vlexp.rewards.accuracy", "_partial_": True}}}})
    >>> reward_columns(cfg)
    {'accuracy': ['solution']}
    """
    needs = {}
    for name, node in reward_funcs(cfg).items():
        if not node.get("_partial_"):
            continue
        try:
            params = inspect.signature(_locate(node.get("_target_"))).parameters.values()
        except Exception:
            continue  # check_rewards reports it
        bound = set(node) - _HYDRA_KEYS
        needs[name] = [
            p.name
            for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and p.default is p.empty
            and p.name not in TRL_REWARD_KWARGS
            and p.name not in bound
        ]
    return needs
