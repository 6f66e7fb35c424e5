"""Faults during training: non-finite gradients.

`NanGuard(on_nan)` is one of the callbacks `recipe.run.build` gives the trainer; loggers
that fail mid-run are switched off by `vlexp.patches.guard_logging_integrations`, and
metrics.jsonl (vlexp.recipe.tracking) keeps every logged row regardless.
"""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

from vlexp.recipe.stops import TrainingStopped

log = logging.getLogger("vlexp")


class NanGuard(TrainerCallback):
    """Stops (or skips) an optimizer step whose gradients hold NaN or inf.

    The check runs in `on_pre_optimizer_step`, after backward and clipping but before the
    optimizer applies the update. On a bad step every gradient is dropped (set to None), so
    the optimizer leaves the weights and its moments untouched. `stop` then asks the Trainer
    for a checkpoint and the end of training: checkpoint-N holds the weights after step N-1,
    the last good state, and resuming from it continues with the next batch. `skip` goes on.

    Under DeepSpeed the engine applies the update inside backward, before this hook: there
    the guard can only stop at the next log row with a non-finite `grad_norm`/`loss`, and the
    last good state is the latest regular checkpoint (train.save_steps).
    """

    def __init__(self, policy: str = "stop") -> None:
        self.policy = policy
        self.saw_gradients = False
        self.skipped: list[int] = []
        self.stop_message: str | None = None

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        import torch

        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not grads:
            return control
        self.saw_gradients = True
        norm = float(torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False))
        if math.isfinite(norm):
            return control
        step = state.global_step + 1
        optimizer.zero_grad(set_to_none=True)  # the optimizer skips parameters without a grad
        if self.policy == "skip":
            self.skipped.append(step)
            log.warning(
                "step %d: gradient norm %s, update skipped (train.on_nan=skip; %d skipped so far)",
                step,
                norm,
                len(self.skipped),
            )
            return control
        self.stop_message = (
            f"gradient norm {norm} at step {step} (train.on_nan=stop). The update of step {step} "
            f"was not applied: {args.output_dir}/checkpoint-{step} holds the last good weights "
            f"(those after step {step - 1}); resuming from it (resume=<that dir>) continues with "
            "the next batch. Lower train.learning_rate, or set train.on_nan=skip to drop such steps."
        )
        log.error("%s", self.stop_message)
        control.should_save = True
        control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.saw_gradients or self.stop_message or not logs:
            return control
        bad = {k: logs[k] for k in ("loss", "grad_norm") if _non_finite(logs.get(k))}
        if bad:  # gradients were never visible here (DeepSpeed): the update already happened
            self.stop_message = (
                f"{bad} at step {state.global_step} (train.on_nan=stop). The weights already "
                "took this update (DeepSpeed steps inside backward): resume from the latest "
                f"checkpoint in {args.output_dir} (train.save_steps) with a lower learning rate."
            )
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.stop_message:
            raise TrainingStopped(self.stop_message)


def _non_finite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
