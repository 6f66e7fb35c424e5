"""Generation-based evaluation: accuracy, rewards and a sample gallery for a model.

- `python -m vlexp.evaluate` (vlexp/evaluate.py) evaluates a run dir, a checkpoint or a base
  model into an eval dir;
- `train.eval_steps=N` runs the same evaluation every N training steps (`callbacks`);
- `bench=[...]` scores standard benchmarks through lmms-eval (`bench`), in both.

Importing this package is cheap: torch and transformers load inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def callbacks(cfg: Any, run_dir: Path, processor: Any) -> list:
    """The in-training evaluation callbacks when `train.eval_steps` is set (else none): on
    data.eval when it is set, on the benchmarks when `bench=` chose some."""
    if not cfg.train.get("eval_steps"):
        return []
    from vlexp.evaluation import bench
    from vlexp.evaluation.callback import BenchCallback, GenerationEvalCallback

    found = [GenerationEvalCallback(cfg, run_dir, processor)] if cfg.data.get("eval") else []
    return found + ([BenchCallback(cfg, run_dir)] if bench.chosen(cfg) else [])
