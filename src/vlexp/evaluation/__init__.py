"""Generation-based evaluation: accuracy, rewards and a sample gallery for a model.

- `python -m vlexp.evaluate` (vlexp/evaluate.py) evaluates a run dir, a checkpoint or a base
  model into an eval dir;
- `train.eval_steps=N` runs the same evaluation every N training steps (`callbacks`).

Importing this package is cheap: torch and transformers load inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def callbacks(cfg: Any, run_dir: Path, processor: Any) -> list:
    """The in-training evaluation callback when `train.eval_steps` is set (else none)."""
    if not cfg.train.get("eval_steps"):
        return []
    from vlexp.evaluation.callback import GenerationEvalCallback

    return [GenerationEvalCallback(cfg, run_dir, processor)]
