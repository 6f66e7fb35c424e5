"""Checks that need no model: run before anything heavy is loaded.

Each check is a small function `cfg -> list of problems` (an empty list when the config is
fine). `validate` runs them all and raises one ConfigError listing every problem, so a user
fixes a config in one round trip. Checks import torch only when the key they guard is set.
"""

from __future__ import annotations

import importlib.util
import inspect
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


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError listing every combination that cannot work."""
    problems = [problem for check in CHECKS for problem in check(cfg)]
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


CHECKS: list[Callable[[DictConfig], list[str]]] = [
    check_choices,
    check_prompt_template,
    check_pixels,
    check_grpo_reward,
    check_generation_batch,
    check_rewards,
    check_quantization,
    check_bf16,
    check_vllm,
    check_ppo,
    check_reward_model_paths,
]


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
