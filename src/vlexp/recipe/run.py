"""The training recipe: args -> processor + data -> model -> trainer -> train -> save.

Everything that matters is built by `hydra.utils.instantiate` from the config; this file
only wires the pieces together, in the order the libraries need them. `build` is the one
place a trainer is made (the tests use it too); `train` runs it.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlexp import environments, evaluation, families, patches, rollout, runplan
from vlexp.algorithms import account, packed_images, video
from vlexp.algorithms.dynamic_sampling import DynamicSampling
from vlexp.config import algo as algorithm
from vlexp.config import memory
from vlexp.config import reward as reward_config
from vlexp.data import build_datasets, fit_loss_mask, image_cache, single_image
from vlexp.data.check import DataCheck
from vlexp.data.messages import prompt_text
from vlexp.models.loading import load_model, load_processor, peft_config
from vlexp.recipe import checkpoints, console, faults, per_node, perf, resume, tracking, trainers
from vlexp.recipe.distributed import ShardReport, held_elements

log = logging.getLogger("vlexp")


@dataclass
class Built:
    """A trainer ready to train, and the run's services that `train` reads afterwards."""

    trainer: Any
    processor: Any
    checkpoint: str | None
    metrics: tracking.MetricsJsonl
    preemption: resume.SaveOnSigterm


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one experiment into `run_dir`; return the last logged training metrics."""
    started = time.monotonic()
    built = build(cfg, run_dir)
    try:
        # One stack chunk for the whole loop (patches.in_one_stack_chunk: ~20% of the tiny
        # GRPO run's training phase went to CPython remapping its frame stack).
        patches.in_one_stack_chunk(built.trainer.train, resume_from_checkpoint=built.checkpoint)
    finally:
        console.close_bar(built.trainer)  # a stop's message must not continue the bar's line
    if built.preemption.stopped_at is not None:
        preemption = built.preemption
        resume.exit_preempted(built.trainer, run_dir, preemption.stopped_at, preemption.signum)
    save_final(built.trainer, built.processor, run_dir / "final")
    if built.trainer.is_world_process_zero():
        write_answers(cfg, run_dir, time.monotonic() - started)
    tracking.finish_wandb_run()
    return built.metrics.last_train_logs


def write_answers(cfg: DictConfig, run_dir: Path, wall_time_s: float) -> None:
    """What the run leaves for people (rank 0): summary.json (and the W&B summary),
    curves.png and the model card, all from what metrics.jsonl holds."""
    from vlexp.recipe import curves, modelcard, summary
    from vlexp.recipe.sweep import read_rows

    rows = read_rows(run_dir)
    headline = console.headline(cfg.algo)
    curves.plot_run(rows, headline, run_dir / "curves.png", title=f"{cfg.algo.name}: {run_dir}")
    answer = summary.build(cfg, run_dir, rows, headline, wall_time_s, summary.peak_memory())
    summary.write(answer, run_dir)
    summary.to_wandb(answer)
    modelcard.write(cfg, run_dir, answer)


def build(cfg: DictConfig, run_dir: Path, **trainer_kwargs: Any) -> Built:
    """Every part of the run, checked and loaded, and the trainer built on them."""
    console.quiet_libraries()  # before TRL is imported: DeepSpeed warns at import
    rollout.resolve_auto(cfg)  # done by the entry point already, unless built directly
    # The TRL args carry the DeepSpeed config: under ZeRO-3, transformers shards weights
    # while loading only if that config is already live, so args come first.
    plan = runplan.of(cfg)  # the family, data, algorithm, rewards: resolved once, here
    args = build_args(cfg, run_dir)
    processor = load_processor(cfg.model, plan.family)
    if plan.env is not None:
        # TRL renders the tools into the prompt and parses the calls with this processor.
        environments.speak_tools(processor, plan.family)
    train_set, eval_set = build_data(cfg, plan, args, processor, run_dir)
    trainer_cls = algorithm.trainer_class(cfg)
    environments.check_trainer(plan.env, trainer_cls, plan.algorithm.name)  # before the model
    packed_images.check_trainer(plan.family, trainer_cls, plan.algorithm.name, cfg.model.name)
    services = Services.for_run(cfg, plan, run_dir, processor, args)
    model, checkpoint = build_model(cfg, plan, args, trainer_cls, run_dir, services)
    patches.guard_logging_integrations()  # a failing logger never stops a run
    parts = trainer_parts(cfg, plan, trainer_cls, train_set, services)
    trainer = trainers.factory(instantiate(cfg.algo.trainer), trainer_cls, parts)(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=processor,
        peft_config=peft_config(plan.memory, model.config.model_type),
        callbacks=services.callbacks(cfg, run_dir),
        **algorithm_inputs(cfg, plan),
        **environment_inputs(plan, trainer_cls),
        **trainer_kwargs,
    )
    for callback in services.in_training_eval:
        callback.bind(trainer)  # generation needs the trainer's accelerator and wrapped model
    account.log_algorithm(trainer)  # the algorithm as the trainer holds it (TRL trainers)
    return Built(trainer, processor, checkpoint, services.metrics, services.preemption)


def image_cache_for_run(plan: runplan.RunPlan, processor: Any):
    """`data.image_cache`'s row transform, unless the environment's tools need the original
    images (env=zoom crops them; the cache holds the downscaled copy)."""
    env = plan.env
    if env is not None and env.get("needs_original_images"):
        log.info("env=%s: images are read as they are (its tools use the originals)", env.name)
        return None
    return image_cache.for_run(plan.data, processor)


def environment_inputs(plan: runplan.RunPlan, trainer_cls: type) -> dict[str, Any]:
    """env=: TRL's `environment_factory` for a GRPO-family trainer (check_trainer refused the
    others before the model loaded)."""
    from trl import GRPOTrainer

    env = plan.env
    if env is None or not issubclass(trainer_cls, GRPOTrainer):
        return {}
    log.info("env=%s: tools %s", env.name, env.factory._target_)
    return {"environment_factory": environments.factory(env, plan.tool_limits())}


def build_data(
    cfg: DictConfig, plan: runplan.RunPlan, args: Any, processor: Any, run_dir: Path
) -> tuple[Any, Any]:
    """The train and eval sets, every record checked before the model loads (bad data fails
    in seconds, not at step N)."""
    train_set, eval_set = build_datasets(
        plan.data.node,
        plan.algorithm.kind,
        data_check_once_per_node(plan, processor, run_dir),
        image_cache_for_run(plan, processor),
        {"train": args.per_device_train_batch_size, "eval": args.per_device_eval_batch_size},
    )
    log.info(
        "data %s: %d train / %s eval records",
        cfg.data.name,
        len(train_set),
        eval_set and len(eval_set),
    )
    if plan.algorithm.one_image:
        train_set, eval_set = single_image(train_set, "train"), single_image(eval_set, "eval")
    fit_loss_mask(args, train_set)
    evaluates = bool(cfg.train.get("eval_steps"))
    video.check_supported(plan.algorithm, plan.paths, train_set, eval_set, evaluates)
    return train_set, eval_set


def build_model(
    cfg: DictConfig,
    plan: runplan.RunPlan,
    args: Any,
    trainer_cls: type,
    run_dir: Path,
    services: Services,
) -> tuple[Any, str | None]:
    """The model (for algorithms that generate, as the policy class whose generate goes
    through the run's rollout engine and phase clock) and the checkpoint to resume from."""
    generates = plan.algorithm.generates
    seam = rollout.seam(cfg, services.clock) if generates else None
    compose = None if seam is None else functools.partial(rollout.policy_class, seam=seam)
    model = load_model(cfg.model, cfg.memory, compose)
    if generates:
        keep_placeholders_out(args, model.config)
        rollout.share_images(model, cfg)  # the log-prob and loss passes encode each image once
    if seam is not None and seam.settings.fast:
        services.perf.add_gauge("perf/recompiles", seam.recompiles)
    if plan.memory.liger_kernel:
        patches.liger_output_classes()  # liger-kernel 0.8.5 fails to import on transformers 5.24
    checkpoint = resume.checkpoint_to_resume(cfg.get("resume"), run_dir)
    if not algorithm.restores_own_weights(trainer_cls):
        resume.restore_full_weights(model, checkpoint, cfg)
    # Counted as ds_numel under ZeRO-3, where each rank holds only a shard.
    log.info(
        "model %s: %.2fM parameters", cfg.model.name, held_elements(model)["param_numel"] / 1e6
    )
    return model, checkpoint


@dataclass
class Services:
    """The run's callbacks and the objects the trainer class reads, made before the model."""

    metrics: tracking.MetricsJsonl
    preemption: resume.SaveOnSigterm
    in_training_eval: list
    perf: perf.PerfCallback
    clock: perf.PhaseClock | None
    sharded: bool  # DeepSpeed holds the model (the ZeRO shard report)

    @classmethod
    def for_run(
        cls, cfg: DictConfig, plan: runplan.RunPlan, run_dir: Path, processor: Any, args: Any
    ) -> Services:
        import torch

        from vlexp.evaluation.tools import Agent

        # Not `args.device`: that sets up the process group before the model loads.
        timers = perf.PerfCallback(cuda=torch.cuda.is_available() and not args.use_cpu)
        agent = Agent.of(plan.env, plan.tool_limits())  # step evaluations run the tools too
        return cls(
            metrics=tracking.MetricsJsonl(run_dir / "metrics.jsonl"),
            preemption=resume.SaveOnSigterm(run_dir, cfg.launcher.get("shutdown_timeout") or 100),
            in_training_eval=evaluation.callbacks(
                plan.evaluation, plan.data, run_dir, processor, agent
            ),
            perf=timers,
            clock=perf.PhaseClock(timers) if plan.algorithm.generates else None,
            sharded=plan.memory.deepspeed is not None,
        )

    def callbacks(self, cfg: DictConfig, run_dir: Path) -> list:
        """What goes into the trainer's `callbacks=`: vlexp's own, then the loggers'."""
        return [
            self.perf,  # step times (its metrics reach the logs through recipe.perf.PerfMixin)
            self.metrics,
            self.preemption,
            faults.NanGuard(cfg.train.get("on_nan", "stop")),
            *self.in_training_eval,
            *sharding_report(self.sharded, run_dir),
            *tracking.logger_callbacks(cfg),
            console.LiveView(console.headline(cfg.algo)),  # one bar, not every log dict
        ]


def data_check_once_per_node(plan: runplan.RunPlan, processor: Any, run_dir: Path):
    """The data check, run by local rank 0 of each machine (it fetches remote images into
    the machine's cache); the machine's other ranks read its result (`recipe.per_node`), and
    only rank 0 writes bad_records.jsonl into the shared run dir."""
    check = DataCheck(
        plan.data,
        processor,
        run_dir,
        writes_report=per_node.this_process().rank == 0,
        tools=environments.tools_of(plan.env, plan.tool_limits()),
    )
    return lambda files: per_node.once_per_node("data-check", run_dir, lambda: check(files))


def trainer_parts(
    cfg: DictConfig, plan: runplan.RunPlan, trainer_cls: type, train_set: Any, services: Services
):
    """What vlexp composes into `algo.trainer`'s class (vlexp.recipe.trainers): GRPO-family
    trainers (a GRPOTrainer or any subclass) get the video mixin and `algo.dynamic_sampling`,
    SFT/DPO-style trainers on videos the video collator; every trainer the services."""
    from trl import GRPOTrainer

    carrier = video.carrier_for(plan.data.video, train_set)
    sampling = DynamicSampling.from_config(cfg.algo.get("dynamic_sampling"))
    grpo = issubclass(trainer_cls, GRPOTrainer)
    if sampling is not None and not grpo:
        raise ValueError(
            f"algo.dynamic_sampling is implemented for GRPOTrainer and its subclasses; "
            f"{trainer_cls.__name__} is not one: set algo.dynamic_sampling.enabled=false"
        )
    return trainers.Parts(
        perf=services.perf,
        clock=services.clock,
        prompt_text=prompt_text,
        video_carrier=carrier if grpo else None,
        video_budget=carrier.budget if carrier is not None and not grpo else None,
        dynamic_sampling=sampling,
        tools=grpo and plan.env is not None,
        packed_images=plan.family.packed_images,
    )


def build_args(cfg: DictConfig, run_dir: Path):
    """The TRL config (algo.args) with the shared `train.*` knobs and run-dir paths merged in."""
    import torch

    shared = OmegaConf.to_container(cfg.train, resolve=True)
    # vlexp's own keys, not TRL arguments: the NaN guard (faults) and generation-based eval
    # (evaluation); train.eval_steps must not become TRL's eval_steps, which algo.args owns.
    for own_key in ("on_nan", "eval_steps"):
        shared.pop(own_key, None)
    if shared.get("use_cpu") is None:
        shared["use_cpu"] = not torch.cuda.is_available()
    if shared.get("bf16") is None:
        shared["bf16"] = cfg.model.dtype == "bfloat16" and not shared["use_cpu"]
    gpu_bytes = None if shared["use_cpu"] else torch.cuda.get_device_properties(0).total_memory
    micro = rollout.micro_batch(cfg, gpu_bytes)  # rollout.micro_batch: sized by the planner
    per_step = {k: micro.pop(k) for k in list(micro) if k in shared}
    shared.update(per_step)
    extra: dict[str, Any] = {"report_to": tracking.configure(cfg.logger, run_dir)}
    if algorithm.of(cfg).rewards:
        extra["reward_weights"] = list(reward_config.weights(cfg).values())
    held = memory.of(cfg)
    if held.gradient_checkpointing:
        # transformers 5's names: `gradient_checkpointing*` still work but warn (deprecated).
        extra["activation_checkpointing"] = True
        extra["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    if held.liger_kernel:
        extra["use_liger_kernel"] = True
    if held.optim_set:
        extra["optim"] = held.optim
    if held.deepspeed is not None:
        extra["deepspeed"] = held.deepspeed
    extra.update(rollout.trainer_args(cfg, args_fields(cfg), vllm_share(cfg)))
    extra.update(micro)  # steps_per_generation, scaled with the micro-batch when set
    turns = environments.max_turns(cfg.get("env"))
    if turns is not None:
        extra["max_tool_calling_iterations"] = turns
    # Keyword arguments win over the node's keys: memory.optim over algo.args.optim.
    return instantiate(cfg.algo.args, output_dir=str(run_dir), **shared, **extra)


def args_fields(cfg: DictConfig) -> set[str]:
    """The fields of the TRL config class `algo.args` builds."""
    import dataclasses

    from hydra.utils import get_class

    cls = get_class(cfg.algo.args._target_)
    return {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()


def vllm_share(cfg: DictConfig) -> float | None:
    """vLLM colocate's GPU share when `rollout.vllm.gpu_memory_utilization=auto`: what the
    planner leaves free on this GPU (vlexp.rollout.vllm.planned_share)."""
    settings = rollout.of(cfg)
    vllm_cfg = settings.vllm or {}
    if settings.engine != "vllm" or vllm_cfg.get("gpu_memory_utilization") != "auto":
        return None
    from vlexp.rollout import vllm

    return vllm.planned_share(cfg)


def keep_placeholders_out(args: Any, model_config: Any) -> None:
    """Generation never samples the model's vision placeholder tokens (`<|image_pad|>`,
    `<|vision_start|>`, ...): one sampled into a completion makes the next forward pass fail
    ("Image features and image tokens do not match"); verl masks them for every model too.
    Added to `generation_kwargs.suppress_tokens` (the user's own entries kept). HF generate
    only: vLLM's SamplingParams has no `suppress_tokens`."""
    import json

    if not hasattr(args, "generation_kwargs") or getattr(args, "use_vllm", False):
        return
    kwargs = args.generation_kwargs or {}
    kwargs = dict(json.loads(kwargs) if isinstance(kwargs, str) else kwargs)
    suppressed = set(kwargs.get("suppress_tokens") or [])
    kwargs["suppress_tokens"] = sorted(
        suppressed | set(families.placeholder_token_ids(model_config))
    )
    args.generation_kwargs = kwargs


def algorithm_inputs(cfg: DictConfig, plan: runplan.RunPlan) -> dict[str, Any]:
    """Trainer arguments only some algorithms take: the reward functions of those whose
    completions the rewards score (`algo.rewards`), each guarded by `reward.on_error`; the
    teacher of those that declare one (`teacher.name_or_path`, TRL loads it)."""
    inputs: dict[str, Any] = {}
    if plan.algorithm.rewards:
        inputs["reward_funcs"] = list(plan.reward_functions().values())
    if algorithm.teacher_path(cfg) is not None:
        inputs["teacher_model"] = algorithm.teacher_path(cfg)
    return inputs


def sharding_report(sharded: bool, run_dir: Path) -> list:
    """Under DeepSpeed (`sharded`), distributed.json records what each rank holds
    (vlexp.recipe.distributed)."""
    return [ShardReport(run_dir)] if sharded else []


def save_final(trainer, processor, final_dir: Path) -> None:
    """Model (or adapter) plus processor, loadable with `from_pretrained`."""
    trainer.save_model(str(final_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(final_dir))
        checkpoints.redact_training_args(final_dir, trainer.args)
    log.info("saved %s", final_dir)
