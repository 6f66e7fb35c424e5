"""Checks of the algorithm, data and training keys, and of TRL 1.16's removed arguments."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from vlexp import environments
from vlexp.config import algo as algorithm
from vlexp.data.videos import Budget, budget_problems
from vlexp.evaluation import bench
from vlexp.evaluation.core import check
from vlexp.runplan import RunPlan


def check_pixels(cfg: DictConfig, plan: RunPlan) -> list[str]:
    family = plan.family
    if not family.pixel_budget:
        return []  # a fixed image size (Gemma 3): model.min_pixels / max_pixels are unused
    side = family.pixels_per_token
    if cfg.model.min_pixels is None or cfg.model.max_pixels is None:
        return [f"model.min_pixels and model.max_pixels must be set ({side}x{side} px = one token)"]
    if cfg.model.min_pixels > cfg.model.max_pixels:
        return [
            f"model.min_pixels ({cfg.model.min_pixels}) > model.max_pixels ({cfg.model.max_pixels}): "
            f"lower model.min_pixels or raise model.max_pixels ({side}x{side} px = one image token)"
        ]
    return []


def check_model_family(cfg: DictConfig, plan: RunPlan) -> list[str]:
    """What the model's family cannot do, said before it loads: ZeRO-3 where it cannot run,
    LoRA on experts it lacks, LoRA dropout where PEFT adapts the experts as parameters."""
    family = plan.family
    if family.zero3_refusal and plan.memory.zero_stage == 3:
        return [f"memory=zero3 on {cfg.model.name} ({family.name}): {family.zero3_refusal}"]
    peft = (cfg.get("memory") or {}).get("peft") or {}
    if family.lora_adapts_experts and peft.get("lora_dropout"):
        return [
            f"memory.peft.lora_dropout={peft.lora_dropout}: on {cfg.model.name} ({family.name}) "
            "PEFT adapts the routed experts' stacked parameters from the MLP names in "
            "memory.peft.target_modules, and LoRA on parameters takes no dropout: set "
            "memory.peft.lora_dropout=0"
        ]
    if not peft.get("target_parameters"):
        return []
    if not family.expert_parameters:
        return [
            f"memory.peft.target_parameters (memory=lora_experts) adapts mixture-of-experts "
            f"experts, and {cfg.model.name} ({family.name}) has none: use memory=lora"
        ]
    unknown = [p for p in peft.target_parameters if p not in family.expert_parameters]
    if unknown:
        return [
            f"memory.peft.target_parameters {unknown}: {family.name}'s experts are "
            f"{list(family.expert_parameters)}"
        ]
    return []


def check_generation_batch(cfg: DictConfig) -> list[str]:
    """TRL's GRPOConfig rules for the generation batch, with vlexp's key names."""
    if not algorithm.of(cfg).groups:  # e.g. PPO: one completion per prompt, no groups
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


def check_dynamic_sampling(cfg: DictConfig) -> list[str]:
    """`algo.dynamic_sampling` (DAPO): a sound node, and each process's share of the generation
    batch made of whole groups, so that groups are kept or dropped on the process that holds
    them (vlexp.algorithms.dynamic_sampling)."""
    from vlexp.algorithms import dynamic_sampling

    node = cfg.algo.get("dynamic_sampling")
    found = dynamic_sampling.problems(node, algorithm.of(cfg).groups)
    if found or not node or not node.get("enabled", False):
        return found
    args, batch = cfg.algo.args, cfg.train.per_device_train_batch_size
    generations = args.get("num_generations") or 8
    spg = args.get("steps_per_generation") or cfg.train.gradient_accumulation_steps
    if args.get("generation_batch_size") is not None:
        spg = args.generation_batch_size // (batch * cfg.launcher.get("num_processes", 1))
    if (batch * spg) % generations:
        return [
            f"algo.dynamic_sampling needs whole groups on each process: "
            f"train.per_device_train_batch_size x algo.args.steps_per_generation = {batch * spg} "
            f"is not a multiple of algo.args.num_generations = {generations}: change one of them"
        ]
    return []


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
    """PPO-style mini-batches (`algo.args.num_mini_batches`) split each rollout evenly."""
    parts = cfg.algo.args.get("num_mini_batches")
    if parts is None:
        return []
    batch = cfg.train.per_device_train_batch_size
    if batch % parts:
        return [
            f"train.per_device_train_batch_size ({batch}) is not a multiple of "
            f"algo.args.num_mini_batches ({parts}): each PPO rollout is split into equal mini-batches"
        ]
    return []


def check_eval(cfg: DictConfig) -> list[str]:
    """train.eval_steps: an eval split (or benchmarks), and decoding settings that mean what
    they say (bench=: what this machine needs is check_bench_machine's)."""
    benchmarks = bench.chosen(cfg.get("bench"))
    if not cfg.train.get("eval_steps"):
        if benchmarks:
            return [
                f"bench={','.join(benchmarks)} runs every train.eval_steps during training, "
                "which is not set: give train.eval_steps=N (a slice: bench.limit=50), or "
                "evaluate after training: python -m vlexp.evaluate run=RUN bench=..."
            ]
        return []

    problems = []
    processes = (cfg.get("launcher") or {}).get("num_processes") or 1
    if benchmarks and processes > 1:
        # lmms-eval's simple_evaluate waits at a barrier for every rank and shards its rows
        # by rank; the benchmark callback runs on rank 0 only, so it would hang there.
        problems.append(
            f"bench={','.join(benchmarks)} with train.eval_steps runs in one process, and "
            f"launcher.num_processes={processes}: drop train.eval_steps and evaluate the "
            "checkpoints after training: python -m vlexp.evaluate run=RUN/checkpoint-N bench=..."
        )
    if not cfg.data.get("eval") and not benchmarks:
        problems.append(
            f"train.eval_steps={cfg.train.eval_steps} needs an eval split, but data.eval is not "
            "set: give data.eval=/path/to/eval.jsonl or drop train.eval_steps"
        )
    try:
        check(cfg.eval)
    except ValueError as err:
        problems.append(str(err))
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


def check_padding_free(cfg: DictConfig) -> list[str]:
    """SFT packing / padding-free and DPO padding-free are refused (or dropped) by TRL 1.16."""
    check = _PADDING_CHECKS.get(algorithm.of(cfg).kind)
    return check(cfg) if check else []


def _sft_packing(cfg: DictConfig) -> list[str]:
    args = cfg.algo.args
    if (args.get("packing") or args.get("padding_free")) and _has_images(cfg.data):
        key = "packing" if args.get("packing") else "padding_free"
        return [
            f"algo.args.{key}=true: TRL 1.16's SFTTrainer refuses it for vision data sets "
            '("Packing is not supported for vision datasets" / "Padding-free training is yet '
            'not supported for vision datasets") and this data set has images: set '
            f"algo.args.{key}=false"
        ]
    return []


def _pairs_padding_free(cfg: DictConfig) -> list[str]:
    if cfg.algo.args.get("padding_free"):
        return [
            "algo.args.padding_free=true: TRL 1.16's DPOTrainer disables it "
            '("temporarily unavailable after a refactor") and would silently pad instead: '
            "set algo.args.padding_free=false"
        ]
    return []


# By record format (algo.kind): what TRL 1.16's trainers of that format refuse.
_PADDING_CHECKS = {"sft": _sft_packing, "dpo": _pairs_padding_free}


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
        "TRL 1.16's DPO always has a reference; for a reference-free objective use "
        "algo=simpo, algo=cpo or algo=orpo"
    ),
    ("dpo", "padding_value"): "use algo.args.pad_token (a token string)",
    ("dpo", "label_pad_token_id"): "remove it: TRL masks labels with the completion mask",
    ("grpo", "max_prompt_length"): "remove it: TRL 1.16 does not truncate GRPO prompts",
    ("grpo", "use_liger_loss"): (
        "remove it: TRL 1.16 computes GRPO log-probs with its own fused LM-head kernel (no "
        "full logits); memory=liger still fuses the norms and SwiGLU"
    ),
}


# Arguments TRL 1.16 refuses when true for vision data, by record format.
_NO_IMAGES_IN_BATCH_GENERATION = (
    "TRL 1.16's continuous-batching generation (`generate_batch`) is given the prompt token "
    "ids only, not pixel_values / image_grid_thw, so image prompts would be answered without "
    "their images: leave it false (fast generation: algo.args.use_vllm=true, or "
    "speed=static_cache)"
)
REFUSED_WHEN_TRUE: dict[tuple[str, str], str] = {
    ("grpo", "use_transformers_continuous_batching"): (
        f"algo.args.use_transformers_continuous_batching=true: {_NO_IMAGES_IN_BATCH_GENERATION}"
    ),
    ("grpo", "use_transformers_paged"): (
        f"algo.args.use_transformers_paged=true: {_NO_IMAGES_IN_BATCH_GENERATION}"
    ),
    ("dpo", "precompute_ref_log_probs"): (
        "algo.args.precompute_ref_log_probs=true: TRL 1.16 refuses it for vision data sets. "
        "To save the reference model's memory use memory=lora: the adapter-disabled base "
        "then serves as the reference, with no second copy of the model"
    ),
}


def check_generation_kwargs(cfg: DictConfig) -> list[str]:
    """`algo.args.generation_kwargs` (speed=static_cache sets it) needs an algorithm that
    generates while training; the SFT/DPO configs have no such argument."""
    args = cfg.algo.get("args") or {}
    if args.get("generation_kwargs") and not algorithm.of(cfg).generates:
        return [
            f"algo.args.generation_kwargs (speed=static_cache / rl_gpu set it) applies to "
            f"algorithms that generate while training (GRPO family, PPO); algo={cfg.algo.name} "
            "does not: drop the speed preset or the key"
        ]
    return []


def check_rollout(cfg: DictConfig) -> list[str]:
    """The `rollout` node: a known engine and settings that go together; vLLM's arguments
    (vlexp.rollout.vllm.problems) for algorithms whose TRL config has them."""
    from vlexp import rollout
    from vlexp.rollout import vllm

    node = cfg.get("rollout")
    if node is None:
        return []
    settings = rollout.of(cfg)
    if settings.engine not in rollout.ENGINES:
        return [f"rollout.engine={settings.engine}: must be one of {', '.join(rollout.ENGINES)}"]
    found = []
    if settings.compile not in (True, False, "auto"):
        found.append(f"rollout.compile={settings.compile}: must be true, false or auto")
    elif settings.compile is True and not settings.static_cache:
        found.append(
            "rollout.compile=true needs rollout.static_cache=true: transformers compiles the "
            "decode step only with a static KV cache"
        )
    micro, rows = settings.micro_batch, cfg.train.per_device_train_batch_size
    if micro not in (None, "auto") and (not isinstance(micro, int) or micro < 1 or rows % micro):
        found.append(
            f"rollout.micro_batch={micro}: null, auto, or a number of rows that divides "
            f"train.per_device_train_batch_size={rows}"
        )
    if settings.engine == "vllm":
        if not algorithm.of(cfg).generates:
            return found  # nothing generates: the rollout is never used
        found += vllm.problems(cfg, _fields_of(cfg.algo.args))
    return found


# transformers 5 renamed these; the algo files set the new names, which win over the old.
RENAMED_ARGS = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def _fields_of(args: DictConfig) -> set[str]:
    """The fields of the config class `algo.args` builds (imports it; asked only when needed)."""
    import dataclasses

    from hydra.utils import get_class

    target = args.get("_target_")
    cls = get_class(target) if target else None
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def check_removed_args(cfg: DictConfig) -> list[str]:
    """`algo.args` keys TRL 1.16 removed, each with what it offers instead."""
    args = cfg.algo.get("args") or {}
    kind = algorithm.of(cfg).kind
    removed = [key for key in args if (kind, key) in REMOVED_ARGS]
    if removed:  # another trainer of the same record kind may still have it (ORPO, CPO)
        removed = [key for key in removed if key not in _fields_of(args)]
    problems = [
        f"algo.args.{key} does not exist in TRL 1.16: {REMOVED_ARGS[kind, key]}" for key in removed
    ]
    problems += [
        REFUSED_WHEN_TRUE[kind, key]
        for key in args
        if (kind, key) in REFUSED_WHEN_TRUE and args.get(key)
    ]
    problems += [
        f"algo.args.{key} is transformers' deprecated name, ignored next to the algo file's "
        f"algo.args.{new}: use memory=grad_ckpt or algo.args.{new}"
        for key, new in RENAMED_ARGS.items()
        if key in args
    ]
    return problems


def check_video(cfg: DictConfig) -> list[str]:
    """data.video: frame and pixel limits that qwen-vl-utils cannot apply."""

    return budget_problems(Budget.from_config(cfg.data.get("video")))


def check_teacher(cfg: DictConfig) -> list[str]:
    """Algorithms that learn from a teacher (a `teacher` node, e.g. algo=distill) name one that
    exists, before any model loads."""
    if cfg.get("teacher") is None:
        return []
    path = algorithm.teacher_path(cfg)
    if path is None:
        return [
            "teacher.name_or_path is not set: give the teacher model, e.g. "
            "teacher.name_or_path=outputs/DATE/TIME (a vlexp run dir: its final/ model), a model "
            "dir, or a hub id such as Qwen/Qwen2.5-VL-7B-Instruct"
        ]
    local = Path(path).expanduser()
    looks_local = path.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        hint = "it does not exist" if not local.exists() else "it holds no config.json"
        return [
            f"teacher.name_or_path={cfg.teacher.name_or_path}: not a model ({hint}); give a "
            "vlexp run dir (its final/ is used), a model dir with config.json, or a hub id"
        ]
    return []


def check_available(cfg: DictConfig) -> list[str]:
    """An algo file may declare why it cannot run here (`unavailable`, e.g. TRL's trainer
    takes no images): stop with that reason before anything loads."""
    reason = cfg.algo.get("unavailable")
    return [f"algo={cfg.algo.get('name')} cannot run: {reason}"] if reason else []


def check_environment(cfg: DictConfig, plan: RunPlan) -> list[str]:
    """env=: limits that cannot work (`vlexp.environments.problems`), before anything loads."""
    budget = plan.algorithm.args.get("max_completion_length") or 0
    return environments.problems(plan.env, plan.family, plan.model, budget)
