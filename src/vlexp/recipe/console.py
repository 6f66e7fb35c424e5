"""What a training run shows on the console: one progress bar with the algorithm's headline
numbers, refreshed in place, and no library noise that vlexp knows to be harmless.

The full metrics of every logging step still go everywhere else: metrics.jsonl, the
configured logger and the run's log file (Hydra's `<job>.log`). Only rank 0 draws the bar.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from typing import Any

from transformers import TrainerCallback

from vlexp.recipe import numbers
from vlexp.recipe.summary import fmt

# The few numbers a researcher watches. An algo file may declare its own list
# (`headline: [objective/scores, ...]`, TRL's metric names); otherwise its record format decides.
# Metrics a run did not log are left out where they are shown (bar, summary, card), so one
# list serves a family: the preference trainers (DPO, KTO, ORPO, CPO/SimPO) log margins, DPO's
# kind the accuracies, KTO its KL estimate.
PREFERENCE = ["rewards/margins", "rewards/accuracies", "kl", "loss"]
HEADLINES: dict[str, list[str]] = {
    # tools/*: TRL logs them only with tools (env=zoom), so other runs leave them out.
    "grpo": [
        "reward",
        "reward_std",
        "kl",
        "completions/mean_length",
        "tools/call_frequency",
        "tools/failure_frequency",
    ],
    "sft": ["loss", "mean_token_accuracy"],
    "dpo": PREFERENCE,
    "kto": PREFERENCE,
}
# Short names for the bar; any other metric shows as its last path part.
LABELS = {
    "completions/mean_length": "len",
    "mean_token_accuracy": "token_acc",
    "rewards/margins": "margin",
    "rewards/accuracies": "acc",
    "objective/scores": "score",
    "objective/kl": "kl",
    "tools/call_frequency": "tool_calls",
    "tools/failure_frequency": "tool_fails",
}

# Warnings vlexp knows to be harmless: (category, start of the message). TRL and PEFT read the
# deprecated `is_gradient_checkpointing`; the user cannot change that, so it only distracts.
QUIET_WARNINGS: list[tuple[type[Warning], str]] = [
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
]
# Log lines vlexp knows to be harmless: logger name -> starts of the messages dropped.
# DeepSpeed warns at import on every machine without CUDA, where CPU is the intent.
# math-verify warns when its signal-based timeout is off, which vlexp does on purpose off the
# main thread (rewards.answers.math_equal), where vlexp's reward guard keeps the deadline.
QUIET_LOG_LINES: dict[str, tuple[str, ...]] = {
    "DeepSpeed": ("Setting accelerator to CPU",),
    "math_verify.parser": ("Timeout is disabled",),
    "math_verify.grader": ("Timeout is disabled",),
}


def headline(algo: Any) -> list[tuple[str, str]]:
    """(metric, label) pairs shown for `algo` (the `algo` config node): its declared
    `headline`, else the list for its record format (`kind`), else the loss."""
    declared = algo.get("headline")
    metrics = list(declared) if declared else HEADLINES.get(str(algo.get("kind")), ["loss"])
    return [(str(m), LABELS.get(str(m), str(m).rsplit("/", 1)[-1])) for m in metrics]


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.starts)


def quiet_libraries() -> None:
    """Silence, in one place, what vlexp knows to be harmless: the warnings and log lines
    above, and the libraries' own progress bars (loading weights, writing shards, casting
    data sets), which would break the run's one bar. Hub downloads keep their bars."""
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, starts in QUIET_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))
    import datasets
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()  # downloads take minutes: keep their bars
    datasets.disable_progress_bars()


def is_eval(logs: dict[str, Any]) -> bool:
    return any(key.startswith(("eval_", "eval/")) for key in logs)


class LiveView(TrainerCallback):
    """The run's one progress bar (rank 0): steps, time left, and the headline numbers of the
    last logging step. Evaluation rows print one short line above the bar."""

    def __init__(self, metrics: list[tuple[str, str]], stream: Any = None) -> None:
        self.metrics = metrics
        self.stream = stream
        self.bar: Any = None
        # tok/s is vlexp.recipe.numbers' definition so far: the session's tokens over the
        # seconds since training began (time.time(), as transformers' train_runtime).
        self._started = time.time()
        self._tokens_before = 0.0
        self._tokens: float | None = None
        self._shown: list[str] = []  # the last training log's headline, kept at the end

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.max_steps,
            initial=state.global_step,  # a resumed run continues where it stopped
            unit="step",
            dynamic_ncols=True,
            file=self.stream or sys.stderr,
        )
        self._started = time.time()
        # GRPO-family trainers restore their token count on resume (num_input_tokens_seen).
        self._tokens_before = float(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._tokens = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        to_log_file(state.global_step, logs)
        if self.bar is None:
            return
        if numbers.RUNTIME in logs:  # the end of training: the run's tokens/s, as the summary's
            self.bar.set_postfix_str(self.postfix({}, logs[numbers.RUNTIME]), refresh=True)
            return
        if is_eval(logs):
            self.bar.write(eval_line(state.global_step, logs), file=self.stream or sys.stderr)
            return
        self.bar.set_postfix_str(self.postfix(logs), refresh=True)

    def postfix(self, logs: dict[str, Any], seconds: float | None = None) -> str:
        """The headline numbers of `logs` and tok/s: the tokens so far over `seconds` (the
        seconds since training began when not given). At the end of training `logs` is empty
        and `seconds` is train_runtime: the last line keeps the last headline numbers."""
        if logs:
            self._shown = [
                f"{label} {fmt(logs[key])}" for key, label in self.metrics if key in logs
            ]
        if isinstance(logs.get(numbers.TOKENS), int | float):
            self._tokens = numbers.session_tokens(float(logs[numbers.TOKENS]), self._tokens_before)
        elapsed = time.time() - self._started if seconds is None else seconds
        rate = numbers.tokens_per_second(self._tokens, elapsed)
        tail = [] if rate is None else [f"tok/s {fmt(rate)}"]
        return "  ".join([*self._shown, *tail])

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """End the bar's line (it stays as last drawn), so what follows starts on its own."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def close_bar(trainer: Any) -> None:
    """Close the live view of a training that stopped (an error, a stop of vlexp's): the
    message that follows then starts on a line of its own, not after the bar."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, LiveView):
            callback.close()


def eval_line(step: int, logs: dict[str, Any]) -> str:
    """`step 20 eval: accuracy 0.31  reward 1.31  format_rate 1` from an eval log row."""
    shown = []
    for name in ("accuracy", "reward", "format_rate", "loss"):
        for key in (f"eval/{name}", f"eval_{name}"):
            if isinstance(logs.get(key), int | float):
                shown.append(f"{name} {fmt(logs[key])}")
                break
    return f"step {step} eval: " + ("  ".join(shown) or "done")


def to_log_file(step: int, logs: dict[str, Any]) -> None:
    """The full metrics dict, into the log file(s) of the root logger only (not the console)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if not handlers:
        return
    record = logging.LogRecord(
        "vlexp.metrics", logging.INFO, __file__, 0, "step %d: %s",
        (step, json.dumps(logs, default=str)), None,
    )  # fmt: skip
    for handler in handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


class LiveViewMixin:
    """A trainer whose one progress display is vlexp's LiveView (passed in `callbacks=`):
    transformers' progress/printer callback (which prints every log dict), added by
    `Trainer.__init__` through `add_callback`, is not added."""

    def add_callback(self, callback: Any) -> None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        cls = callback if isinstance(callback, type) else type(callback)
        if issubclass(cls, ProgressCallback | PrinterCallback) or (
            cls.__name__ == "NotebookProgressCallback"
        ):
            return
        super().add_callback(callback)
