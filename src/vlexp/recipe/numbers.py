"""Each headline number of a run, defined once. The live bar, the end-of-run block,
summary.json, W&B's summary, `python -m vlexp.compare` and the model card all call these
functions, so one run shows one value everywhere.

tokens/s   the tokens the trainer counted (TRL's `num_tokens`: every rank's prompt and
           completion tokens of the training batches, padding excluded) over the training
           wall time (transformers' `train_runtime`: from the start of the training loop to
           its end, generation, evaluation, logging and checkpoints included). While training,
           the tokens so far over the seconds so far; at the end both are the session's totals.
           A resumed run counts its own session: the tokens since it started, over its runtime.
first/last the mean of the first and of the last `window(n)` logged values of a metric (one
           batch of RL is noisy): a tenth of the n logged steps, 1 to 10.

Per-step and per-GPU rates (`perf/tokens_per_second_per_gpu`: training forward tokens over the
optimizer steps' seconds, see vlexp.recipe.perf) are other numbers under their own names.
"""

from __future__ import annotations

import math
from typing import Any

TOKENS = "num_tokens"
RUNTIME = "train_runtime"
# Written by vlexp.recipe.tracking.MetricsJsonl into the end-of-training row: the step the
# session started from (0, or the checkpoint it resumed) and the trainer state's token count
# then (`num_input_tokens_seen`, which TRL's GRPO-family trainers log as num_tokens).
START_STEP = "train_start_step"
START_TOKENS = "train_start_tokens"


def window(count: int) -> int:
    """How many logged steps `first` and `last` average: a tenth of them, 1 to 10."""
    return max(1, min(10, count // 10))


def finite_values(rows: list[dict[str, Any]], metric: str) -> list[float]:
    """`metric`'s finite numeric values in `rows`, in order (booleans and NaN left out)."""
    return [
        float(row[metric])
        for row in rows
        if isinstance(row.get(metric), int | float)
        and not isinstance(row.get(metric), bool)
        and math.isfinite(row[metric])
    ]


def first_last(rows: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """Mean of the first and of the last `window` finite values of `metric` in the training
    rows; None when it was never logged."""
    values = finite_values(rows, metric)
    if not values:
        return None
    n = window(len(values))
    return {
        "first": sum(values[:n]) / n,
        "last": sum(values[-n:]) / n,
        "mean_of": n,
        "logged": len(values),
    }


def tokens_per_second(tokens: float | None, seconds: float | None) -> float | None:
    """The definition itself: tokens over seconds, None when either is unknown or zero."""
    if tokens is None or not seconds or seconds <= 0:
        return None
    return float(tokens) / float(seconds)


def session_tokens(count: float, before: float) -> float:
    """Tokens of this training session from the trainer's cumulative `count`, given the
    trainer state's count when the session began. TRL's GRPO-family trainers log that state
    count, restored from a checkpoint; the others count again from 0 (a count below `before`
    started again with the session)."""
    return count - before if count >= before else count


def throughput(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """`{"tokens", "seconds", "tokens_per_s"}` of a finished run from its metrics.jsonl rows
    (training rows and the end-of-training row); None when it logged no token count or did
    not finish."""
    end = next((row for row in reversed(rows) if RUNTIME in row), None)
    if end is None:
        return None
    start = end.get(START_STEP) or 0
    counts = [row[TOKENS] for row in rows if _is_count(row) and (row.get("step") or 0) > start]
    if not counts:
        return None
    tokens = session_tokens(float(counts[-1]), float(end.get(START_TOKENS) or 0))
    rate = tokens_per_second(tokens, end[RUNTIME])
    if rate is None:
        return None
    return {"tokens": tokens, "seconds": float(end[RUNTIME]), "tokens_per_s": rate}


def reward_functions(metrics: set[str] | list[str]) -> list[tuple[str, str]]:
    """(metric, label) of each reward function's mean reward that was logged
    (`rewards/<name>/mean`, TRL's name), sorted by name: the parts of the total `reward`."""
    names = sorted(
        {
            m[len("rewards/") : -len("/mean")]
            for m in metrics
            if m.startswith("rewards/") and m.endswith("/mean") and m.count("/") == 2
        }
    )
    return [(f"rewards/{name}/mean", f"reward: {name}") for name in names]


def _is_count(row: dict[str, Any]) -> bool:
    value = row.get(TOKENS)
    return RUNTIME not in row and isinstance(value, int | float) and math.isfinite(value)
