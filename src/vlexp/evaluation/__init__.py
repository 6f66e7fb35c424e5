"""Generation-based evaluation: accuracy, rewards and a sample gallery for a model.

- `python -m vlexp.evaluate` (vlexp/evaluate.py) evaluates a run dir, a checkpoint or a base
  model into an eval dir;
- `train.eval_steps=N` runs the same evaluation every N training steps (`callbacks`);
- `bench=[...]` scores standard benchmarks through lmms-eval (`bench`), in both.

Importing this package is cheap: torch and transformers load inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Evaluation:
    """What evaluation reads of a run (the run plan's part, `vlexp.runplan`)."""

    every: int | None  # train.eval_steps: evaluate every N training steps (None: never)
    eval: Any  # the `eval` node: decoding, limit, gallery
    bench: Any  # the `bench` node (None: no benchmarks)
    reward: Any  # the `reward` node: how completions are scored
    model: Any  # the `model` node: the lmms-eval backend's settings


def callbacks(
    evaluation: Evaluation, data: Any, run_dir: Path, processor: Any, agent: Any = None
) -> list:
    """The in-training evaluation callbacks when `train.eval_steps` is set (else none): on
    data.eval when it is set, on the benchmarks when `bench=` chose some. `data`: the run
    plan's data part (vlexp.data.spec.DataSpec); `agent`: the run's environment
    (`vlexp.evaluation.tools.Agent`, env=), which data.eval's samples then run with."""
    if not evaluation.every:
        return []
    from vlexp.evaluation import bench
    from vlexp.evaluation.callback import BenchCallback, GenerationEvalCallback

    found = []
    if data.node.get("eval"):
        found.append(GenerationEvalCallback(evaluation, data, run_dir, processor, agent))
    return found + ([BenchCallback(evaluation, run_dir)] if bench.chosen(evaluation.bench) else [])
