"""`train.eval_steps`: the evaluation of `python -m vlexp.evaluate`, every N training steps.

Metrics go through the trainer's own logging path as `eval_<name>`, so metrics.jsonl and
every logger (W&B, TensorBoard) show them as `eval/<name>` at the training step; the
samples of each evaluation are written to `<run dir>/eval/step-N/` (metrics.json,
samples.jsonl, samples.html) and, with logger=wandb, logged as the `eval/samples` table.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from vlexp import patches
from vlexp.evaluation.core import check, decoding, evaluate, write_outputs
from vlexp.evaluation.gallery import wandb_table
from vlexp.evaluation.generation import load_examples
from vlexp.evaluation.tools import Agent

log = logging.getLogger("vlexp")

# Per-run details, not curves: kept in step-N/metrics.json, left out of the training log.
_NOT_LOGGED = ("num_prompts", "num_completions", "runtime_s")


class EveryNSteps(TrainerCallback):
    """What the step evaluations share: every `train.eval_steps`, the trainer's model unwrapped
    for generation and in eval mode; `evaluate_model` (the subclass) does the rest."""

    def __init__(self, every: int) -> None:
        self.trainer = None
        self.every = int(every)

    def bind(self, trainer) -> None:
        """The trainer whose wrapped model and accelerator generation uses (set once built)."""
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.run(args, state, control)

    def run(self, args, state, control) -> dict[str, Any]:
        with model_for_generation(self.trainer, args) as model:
            return self.evaluate_model(model, args, state, control)

    def evaluate_model(self, model, args, state, control) -> dict[str, Any]:
        raise NotImplementedError


@contextlib.contextmanager
def model_for_generation(trainer, args):
    """TRL's own unwrapping for generation: gathers ZeRO-3 shards (unless
    ds3_gather_for_generation=false) and lifts gradient checkpointing meanwhile; the model is
    in eval mode inside and back in its own mode after."""
    from trl.models import unwrap_model_for_generation

    gather = getattr(args, "ds3_gather_for_generation", True)
    with unwrap_model_for_generation(
        trainer.model_wrapped, trainer.accelerator, gather_deepspeed3_params=gather
    ) as model:
        was_training = model.training
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


class GenerationEvalCallback(EveryNSteps):
    """Greedy (or sampled) generation on the eval split, scored with the run's rewards."""

    def __init__(
        self, evaluation: Any, data: Any, run_dir: Path, processor: Any, agent: Agent | None = None
    ) -> None:
        """`evaluation`, `data`: the run plan's parts (vlexp.evaluation.Evaluation, DataSpec);
        `agent`: the run's environment (env=): each sample is then a rollout with its tools."""
        check(evaluation.eval)
        self.agent = agent
        super().__init__(evaluation.every)
        self.eval_cfg, self.reward_cfg, self.data_cfg = (
            evaluation.eval,
            evaluation.reward,
            data.node,
        )
        self.out_dir = Path(run_dir) / "eval"
        limit = evaluation.eval.get("limit")
        self.examples = load_examples(data, evaluation.eval.max_new_tokens, processor, limit)

    def evaluate_model(self, model, args, state, control) -> dict[str, Any]:
        trainer = self.trainer
        metrics, samples = evaluate(
            model,
            trainer.processing_class,
            self.examples,
            self.eval_cfg,
            self.reward_cfg,
            accelerator=trainer.accelerator,
            progress=state.is_world_process_zero,
            desc=f"eval @ step {state.global_step}",
            data_cfg=self.data_cfg,
            agent=self.agent,  # the processor already speaks tools (env=)
        )
        if state.is_world_process_zero:
            self.record(args, state, control, metrics, samples)
        return metrics

    def record(self, args, state, control, metrics: dict, samples: list[dict]) -> None:
        """Rank 0: the training log, step-N/ files, the W&B table and one console line."""
        logs = {f"eval_{k}": v for k, v in metrics.items() if k not in _NOT_LOGGED}
        patches.log_row(self.trainer, args, state, control, logs)
        meta = {"step": state.global_step, "decoding": decoding(self.eval_cfg)}
        step_dir = self.out_dir / f"step-{state.global_step}"
        write_outputs(step_dir, metrics, samples, meta, self.eval_cfg.gallery)
        if "wandb" in (args.report_to or []):
            log_wandb_table(samples, self.eval_cfg.gallery, state.global_step)
        log.info(
            "eval @ step %d: accuracy %s, reward %s -> %s",
            state.global_step,
            metrics.get("accuracy"),
            metrics.get("reward"),
            step_dir,
        )


def log_wandb_table(samples: list[dict], gallery_cfg: Any, step: int) -> None:
    import wandb

    if wandb.run is not None:
        wandb.log({"eval/samples": wandb_table(samples, gallery_cfg), "train/global_step": step})


class BenchCallback(EveryNSteps):
    """`bench=[...]` with `train.eval_steps`: lmms-eval on the benchmarks (a `bench.limit`
    slice) every N steps, logged as eval/bench/<name> at the training step; lmms-eval's
    files go to <run dir>/eval/bench/step-N/."""

    def __init__(self, evaluation: Any, run_dir: Path) -> None:
        super().__init__(evaluation.every)
        self.bench, self.model_cfg = evaluation.bench, evaluation.model
        self.out_dir = Path(run_dir) / "eval" / "bench"

    def evaluate_model(self, model, args, state, control) -> dict[str, Any]:
        from vlexp.evaluation import bench

        if not state.is_world_process_zero:  # lmms-eval runs in one process: rank 0 scores
            return {}
        step_dir = self.out_dir / f"step-{state.global_step}"
        with rng_kept():
            processor = self.trainer.processing_class
            report = bench.run(model, processor, self.bench, self.model_cfg, step_dir)
        bench.write_summary(step_dir, {"step": state.global_step}, report)
        if report:
            logs = {f"eval_{k}": v for k, v in bench.scores(report).items()}
            patches.log_row(self.trainer, args, state, control, logs)
            log.info("bench @ step %d: %s", state.global_step, logs)
        return report


@contextlib.contextmanager
def rng_kept():
    """simple_evaluate seeds python, numpy and torch (lmms-eval's fixed seeds); training's
    random streams (sampling, dropout, data order) go on afterwards as if it had not run."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
