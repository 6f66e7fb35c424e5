"""Where metrics go: metrics.jsonl in the run dir always, plus the configured logger."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


def configure(logger_cfg: Any, run_dir: Path) -> list[str]:
    """Set the logger's environment for this run; return TRL's `report_to` list."""
    report_to = list(logger_cfg.get("report_to") or [])
    if "wandb" in report_to:
        os.environ["WANDB_PROJECT"] = str(logger_cfg.project)
        os.environ["WANDB_DIR"] = str(run_dir)
        if logger_cfg.get("entity"):
            os.environ["WANDB_ENTITY"] = str(logger_cfg.entity)
        os.environ["WANDB_MODE"] = wandb_mode(logger_cfg.get("mode", "auto"))
    return report_to


def wandb_mode(mode: str) -> str:
    """`auto` is online only when credentials exist, so a run never hangs on a login prompt."""
    if mode != "auto":
        return mode
    has_key = bool(os.environ.get("WANDB_API_KEY")) or _netrc_has_wandb()
    return "online" if has_key else "offline"


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


class MetricsJsonl(TrainerCallback):
    """Appends every log event as one JSON line (TRL's metric names), on rank 0 only."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.last_train_logs: dict[str, Any] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **_jsonable(logs)}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if not any(key.startswith("eval_") for key in logs):
            self.last_train_logs = record


def _jsonable(logs: dict[str, Any]) -> dict[str, Any]:
    # NaN/inf are kept visible (as strings) rather than written as invalid JSON.
    out = {}
    for key, value in logs.items():
        plain = isinstance(value, int | str | bool | type(None))
        if not plain and not (isinstance(value, float) and math.isfinite(value)):
            value = str(value)
        out[key] = value
    return out
