"""The training recipe: args -> processor + model -> data -> rewards -> trainer -> train -> save.

Everything that matters is built by `hydra.utils.instantiate` from the config; this file
only wires the pieces together, in the order the libraries need them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlexp import evaluation, faults, resume, rl, tracking, video
from vlexp.data import build_datasets, fit_loss_mask, image_cache
from vlexp.data.check import DataCheck
from vlexp.distributed import ShardReport, held_elements
from vlexp.models import load_model, load_processor

log = logging.getLogger("vlexp")


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one experiment into `run_dir`; return the last logged training metrics."""
    # The TRL args carry the DeepSpeed config: under ZeRO-3, transformers shards weights
    # while loading only if that config is already live, so args come first.
    args = build_args(cfg, run_dir)
    processor = load_processor(cfg.model)
    # Every record is checked before the model loads: bad data fails in seconds, not at step N.
    train_set, eval_set = build_datasets(
        cfg.data,
        cfg.algo.kind,
        DataCheck(cfg, processor, run_dir),
        image_cache.for_run(cfg, processor),
    )
    log.info(
        "data %s: %d train / %s eval records",
        cfg.data.name,
        len(train_set),
        eval_set and len(eval_set),
    )
    fit_loss_mask(args, train_set)
    video.check_supported(cfg, train_set, eval_set)

    model = load_model(cfg.model, cfg.memory)
    checkpoint = resume.checkpoint_to_resume(cfg.get("resume"), run_dir)
    resume.restore_full_weights(model, checkpoint, cfg)
    # Counted as ds_numel under ZeRO-3, where each rank holds only a shard.
    log.info(
        "model %s: %.2fM parameters", cfg.model.name, held_elements(model)["param_numel"] / 1e6
    )

    metrics = tracking.MetricsJsonl(run_dir / "metrics.jsonl")
    preemption = resume.SaveOnSigterm(run_dir)
    trainer = make_trainer(
        cfg,
        model,
        processor,
        args,
        train_set,
        eval_set,
        callbacks=[
            metrics,
            preemption,
            *sharding_report(cfg, run_dir),
            *tracking.logger_callbacks(cfg),
        ],
    )
    faults.install(trainer, cfg.train.get("on_nan", "stop"))  # NaN guard; loggers can't stop a run
    rl.setup_trainer(trainer)  # GRPO family: logs the algorithm as the trainer holds it
    evaluation.attach(trainer, cfg, run_dir)  # train.eval_steps: generate + score every N steps
    trainer.train(resume_from_checkpoint=checkpoint)
    if preemption.stopped_at is not None:
        resume.exit_preempted(trainer, run_dir, preemption.stopped_at)
    save_final(trainer, processor, run_dir / "final")
    tracking.finish_wandb_run()
    return metrics.last_train_logs


def make_trainer(
    cfg: DictConfig,
    model,
    processor,
    args,
    train_set,
    eval_set,
    callbacks: list | None = None,
    **trainer_kwargs: Any,
):
    """`algo.trainer` built on the loaded parts: PEFT config, reward functions (GRPO) and, for
    records with videos, vlexp.video's carrier (TRL's trainers hand the processor images only)."""
    trainer_cls = video.for_run(instantiate(cfg.algo.trainer), cfg, train_set)
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=processor,
        peft_config=instantiate(cfg.memory.peft) if cfg.memory.get("peft") else None,
        callbacks=callbacks,
        **algorithm_inputs(cfg),
        **trainer_kwargs,
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
    extra: dict[str, Any] = {"report_to": tracking.configure(cfg.logger, run_dir)}
    if cfg.algo.kind == "grpo":
        extra["reward_weights"] = [float(w) for w in reward_table(cfg).values()]
    if cfg.memory.get("gradient_checkpointing"):
        extra["gradient_checkpointing"] = True
        extra["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    if cfg.memory.get("liger_kernel"):
        extra["use_liger_kernel"] = True
    if cfg.memory.get("optim"):
        extra["optim"] = cfg.memory.optim
    if cfg.memory.get("deepspeed") is not None:
        extra["deepspeed"] = OmegaConf.to_container(cfg.memory.deepspeed, resolve=True)
    return instantiate(cfg.algo.args, output_dir=str(run_dir), **shared, **extra)


def reward_table(cfg: DictConfig) -> dict[str, float]:
    """Reward name -> weight, in the order the functions are given to the trainer."""
    reward = cfg.get("reward") or {}
    funcs = reward.get("funcs") or {}
    weights = reward.get("weights") or {}
    return {name: weights.get(name, 1.0) for name in funcs}


def algorithm_inputs(cfg: DictConfig) -> dict[str, Any]:
    """Trainer arguments only some algorithms take (GRPO: the reward functions)."""
    if cfg.algo.kind != "grpo":
        return {}
    return {"reward_funcs": rl.reward_funcs(cfg)}


def sharding_report(cfg: DictConfig, run_dir: Path) -> list:
    """Under DeepSpeed, distributed.json records what each rank holds (vlexp.distributed)."""
    return [ShardReport(run_dir)] if cfg.memory.get("deepspeed") is not None else []


def save_final(trainer, processor, final_dir: Path) -> None:
    """Model (or adapter) plus processor, loadable with `from_pretrained`."""
    trainer.save_model(str(final_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(final_dir))
    log.info("saved %s", final_dir)
