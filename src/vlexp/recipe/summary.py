"""The answer at the end of a run: summary.json in the run dir, the same numbers in the W&B
summary, and a few lines on the console (what ran, how it went, where things are, what next).

Everything is computed from what the run dir holds (metrics.jsonl, config.resolved.yaml), so
a multi-process run's parent prints exactly what its rank 0 wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vlexp.recipe import numbers

SUMMARY = "summary.json"
EVAL_NAMES = ("accuracy", "reward", "format_rate", "completions/mean_length")
# What the end-of-run block says final/ holds (summary.json's paths.final_holds).
FINAL_HOLDS = {
    "model": "model + processor (AutoModelForImageTextToText.from_pretrained)",
    "adapter": "LoRA adapter + processor (PeftModel.from_pretrained on the base model: "
    "README.md shows how)",
}


def fmt(value: Any) -> str:
    """A metric for a narrow column: 4 significant digits, big numbers without exponent."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def last_eval(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last `train.eval_steps` evaluation logged during training (eval/* names)."""
    evals = [row for row in rows if any(key.startswith("eval/") for key in row)]
    if not evals:
        return None
    row = evals[-1]
    out = {name: row[f"eval/{name}"] for name in EVAL_NAMES if f"eval/{name}" in row}
    return {"step": row.get("step"), **out}


def peak_memory() -> dict[str, Any]:
    """This process's peak memory: CUDA allocations when a GPU trained, else its max RSS."""
    import resource

    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return {"gb": torch.cuda.max_memory_allocated() / 2**30, "of": "GPU (rank 0, allocated)"}
    # ru_maxrss is in KiB on Linux.
    return {"gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "of": "process RSS"}


def build(
    cfg: DictConfig,
    run_dir: Path,
    rows: list[dict[str, Any]],
    headline: list[tuple[str, str]],
    wall_time_s: float,
    memory: dict[str, Any],
) -> dict[str, Any]:
    """summary.json's content from the run's config and its metrics.jsonl rows."""
    from vlexp.recipe.sweep import train_rows

    training = train_rows(rows)
    end = next((row for row in reversed(rows) if numbers.RUNTIME in row), {})
    speed = numbers.throughput(rows) or {}
    metrics = {}
    logged = {key for row in training for key in row}
    for key, label in [*headline, *numbers.reward_functions(logged)]:
        values = numbers.first_last(training, key)
        if values is not None:
            metrics[key] = {"label": label, **values}
    run_dir = Path(run_dir)
    final = run_dir / "final"
    return {
        "algo": str(cfg.algo.name),
        "trainer": str(cfg.algo.trainer.get("_target_", "")).rsplit(".", 1)[-1],
        "model": str(cfg.model.name_or_path),
        "data": {
            "name": str(cfg.data.name),
            "train": _plain(cfg.data.get("train")),
            "eval": _plain(cfg.data.get("eval")),
        },
        "steps": max((row["step"] for row in training), default=end.get("step", 0)),
        "max_steps": int(cfg.train.max_steps),
        "train_runtime_s": end.get(numbers.RUNTIME),
        "wall_time_s": round(wall_time_s, 2),
        # vlexp.recipe.numbers defines both: the session's tokens over its train_runtime.
        "tokens": speed.get("tokens"),
        "tokens_per_s": speed.get("tokens_per_s"),
        "peak_memory_gb": round(memory["gb"], 3),
        "peak_memory_of": memory["of"],
        "metrics": metrics,
        "eval": last_eval(rows),
        "paths": {
            "run_dir": str(run_dir),
            "final": str(final) if final.is_dir() else None,
            "final_holds": _final_holds(final),
            "metrics": str(run_dir / "metrics.jsonl"),
            "curves": str(run_dir / "curves.png"),
            "model_card": str(run_dir / "README.md"),
            "config": str(run_dir / "config.resolved.yaml"),
        },
        "next": next_commands(cfg, run_dir),
    }


def next_commands(cfg: DictConfig, run_dir: Path) -> list[str]:
    """What a researcher runs next, with this run dir filled in."""
    commands = []
    if cfg.data.get("eval"):
        commands.append(f"python -m vlexp.evaluate run={run_dir}")
    commands.append(f"python -m vlexp.compare {run_dir}")
    if (cfg.logger.get("report_to") or []) and "wandb" in cfg.logger.report_to:
        offline = sorted(Path(run_dir).glob("wandb/offline-run-*"))
        if offline:
            commands.append(f"wandb sync {offline[-1]}")
    return commands


def write(summary: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / SUMMARY
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def to_wandb(summary: dict[str, Any]) -> None:
    """The headline numbers into the open W&B run's summary (`summary/...` keys)."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    flat: dict[str, Any] = {
        "summary/steps": summary["steps"],
        "summary/wall_time_s": summary["wall_time_s"],
        "summary/peak_memory_gb": summary["peak_memory_gb"],
    }
    if summary["tokens_per_s"] is not None:
        flat["summary/tokens_per_s"] = summary["tokens_per_s"]
        flat["summary/tokens"] = summary["tokens"]
        flat["summary/train_runtime_s"] = summary["train_runtime_s"]
    for key, values in summary["metrics"].items():
        flat[f"summary/{key}/first"] = values["first"]
        flat[f"summary/{key}/last"] = values["last"]
    for name, value in (summary["eval"] or {}).items():
        if name != "step":
            flat[f"summary/eval/{name}"] = value
    try:
        wandb.run.summary.update(flat)
    except Exception as err:  # a logger must never end a run (see vlexp.recipe.faults)
        import logging

        logging.getLogger("vlexp").warning("W&B summary not recorded: %s", err)


def render(summary: dict[str, Any]) -> str:
    """The console's end-of-run answer."""
    data = summary["data"]["name"]
    timing = f"{summary['steps']} steps in {_duration(summary['train_runtime_s'])}"
    facts = [timing]
    if summary.get("tokens_per_s"):
        facts.append(f"{fmt(summary['tokens_per_s'])} tokens/s")
    facts.append(f"peak memory {summary['peak_memory_gb']:.2f} GB ({summary['peak_memory_of']})")
    lines = [
        f"vlexp: {summary['algo']} on {summary['model']} over {data}: " + ", ".join(facts),
    ]
    metrics = summary["metrics"]
    if metrics:
        n = max(values["mean_of"] for values in metrics.values())
        width = max(len(values["label"]) for values in metrics.values())
        each = "" if n == 1 else f"  (each a mean of {n} logged steps)"
        lines.append(f"  {''.ljust(width)}  first -> last{each}")
        for values in metrics.values():
            lines.append(
                f"  {values['label'].ljust(width)}  {fmt(values['first'])} -> {fmt(values['last'])}"
            )
    if summary.get("eval"):
        shown = ", ".join(
            f"{name} {fmt(value)}" for name, value in summary["eval"].items() if name != "step"
        )
        lines.append(f"  eval at step {summary['eval']['step']}: {shown}")
    paths = summary["paths"]
    lines.append(f"vlexp: done. run dir: {paths['run_dir']}")
    holds = paths.get("final_holds") or "model"
    for name, what in (
        ("final", FINAL_HOLDS.get(holds, FINAL_HOLDS["model"])),
        ("metrics", "every logged step"),
        ("curves", "headline curves"),
        ("model_card", "model card"),
    ):
        if paths.get(name) and Path(paths[name]).exists():
            lines.append(f"  {Path(paths[name]).name:<14} {what}")
    if summary.get("next"):
        lines.append("next:")
        lines += [f"  {command}" for command in summary["next"]]
    return "\n".join(lines)


def read(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _final_holds(final: Path) -> str | None:
    """What final/ holds: a PEFT adapter (adapter_config.json) or the whole model."""
    if not final.is_dir():
        return None
    return "adapter" if (final / "adapter_config.json").is_file() else "model"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | bool) else str(value)
