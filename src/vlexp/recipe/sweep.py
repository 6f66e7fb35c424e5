"""Sweeps: the objective a sweeper optimises, and `sweep.jsonl`, one line per finished job.

`SweepLog` is a Hydra callback (registered under `hydra.callbacks` in conf/config.yaml), so
it runs for every launcher: basic, joblib, submitit. Hydra 1.3.8 catches an exception in a
job, marks it FAILED, runs the remaining jobs of the batch and re-raises afterwards (Optuna:
up to `max_failure_rate`), so a failed job shows up here with its error while the others
still finish. No torch import here: Hydra instantiates callbacks before composing jobs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from vlexp.recipe import redact

log = logging.getLogger("vlexp")

SWEEP_LOG = "sweep.jsonl"


class JobFailed(RuntimeError):
    """A sweep job that stopped with a message for people (config, data or run-dir error)."""


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Training log rows of a run dir's metrics.jsonl (eval rows and the summary row apart)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a job killed mid-write leaves a partial last line
    return rows


def train_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        row
        for row in rows
        if "train_runtime" not in row and not any(key.startswith(("eval_", "eval/")) for key in row)
    ]


def objective(run_dir: Path, metric: str = "reward", last: int = 10) -> float | None:
    """Mean of the last `last` finite logged values of `metric` (None when none were logged).

    One GRPO step's reward is a mean over a single batch of generations: averaging the last
    few steps keeps a sweeper from chasing one lucky batch.
    """
    values = [
        float(row[metric])
        for row in train_rows(read_rows(run_dir))
        if isinstance(row.get(metric), int | float) and math.isfinite(row[metric])
    ]
    if not values:
        return None
    tail = values[-max(1, int(last)) :]
    return sum(tail) / len(tail)


class SweepLog(Callback):
    """Appends `{job, overrides, run_dir, status, objective, error, final}` to sweep.jsonl."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Optuna's storage brings alembic, whose INFO lines ("setup plugin ...") would go
        # through Hydra's logging as `[HYDRA] ...`: harmless, and not the user's concern.
        logging.getLogger("alembic").setLevel(logging.WARNING)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """The sweep's answer on the console: one row per job, Optuna's best trial."""
        print(sweep_report(Path(config.hydra.sweep.dir)))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra has just written .hydra/ (and, for -m, multirun.yaml): keep secrets out.
        output_dir = Path(config.hydra.runtime.output_dir)
        redact.scrub_files(output_dir / str(config.hydra.output_subdir or ".hydra"))
        if _is_multirun(config):
            redact.scrub_files(Path(config.hydra.sweep.dir))
        self._started = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        run_dir = Path(config.hydra.runtime.output_dir)
        failed = job_return.status != JobStatus.COMPLETED
        rows = train_rows(read_rows(run_dir))
        summary = [row for row in read_rows(run_dir) if "train_runtime" in row]
        record = {
            "job": int(config.hydra.job.num),
            "overrides": list(job_return.overrides or []),
            "run_dir": str(run_dir),
            "status": "failed" if failed else "completed",
            "objective": None if failed else job_return.return_value,
            # The public `return_value` re-raises a failure; the exception itself is kept here.
            "error": _error_text(job_return._return_value) if failed else None,
            "wall_time_s": round(time.time() - getattr(self, "_started", time.time()), 2),
            "final": {**(rows[-1] if rows else {}), **(summary[-1] if summary else {})},
        }
        path = Path(config.hydra.sweep.dir) / SWEEP_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write per line: concurrent jobs (joblib, submitit) append whole lines.
        line = redact.scrub_text(json.dumps(record, default=str)) + "\n"
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line)
        if failed:
            log.error("job %s failed (%s); recorded in %s", record["job"], record["error"], path)


def read_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """The records of a sweep dir's sweep.jsonl, in job order."""
    path = Path(sweep_dir) / SWEEP_LOG
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(records, key=lambda record: record["job"])


def sweep_report(sweep_dir: Path) -> str:
    """A table of the sweep's jobs (overrides, status, objective), Optuna's best trial when
    the sweeper wrote one, and where to look next."""
    path = Path(sweep_dir) / SWEEP_LOG
    if not path.is_file():
        return f"vlexp: sweep done, no job finished: {sweep_dir}"
    records = read_sweep(sweep_dir)
    header = ["job", "status", "objective", "overrides"]
    rows = [
        [
            str(r["job"]),
            r["status"],
            "-" if r.get("objective") is None else f"{r['objective']:.4g}",
            " ".join(r.get("overrides") or []),
        ]
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"vlexp: sweep of {len(records)} jobs done: {sweep_dir}"]
    lines += [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    best = _optuna_best(Path(sweep_dir))
    if best:
        lines.append(best)
    lines.append(f"  every job: {path}")
    lines.append(f"next:\n  python -m vlexp.compare {sweep_dir}")
    return "\n".join(lines)


def _optuna_best(sweep_dir: Path) -> str | None:
    """`best: objective X with a=1 b=2` from the Optuna sweeper's optimization_results.yaml."""
    import yaml

    try:
        results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(results, dict) or "best_value" not in results:
        return None
    params = " ".join(f"{k}={v}" for k, v in (results.get("best_params") or {}).items())
    return f"  best trial (Optuna): objective {results['best_value']:.4g} with {params}"


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.get("mode") == RunMode.MULTIRUN


def _error_text(error: Any) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) < 2000 else text[:2000] + "..."


@dataclass
class Run:
    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)  # eval/* rows, by step
    status: str = "completed"
    wall_time_s: float | None = None
    label: str = ""
    throughput: dict[str, float] | None = None  # vlexp.recipe.numbers.throughput
    objective: float | None = None  # as the sweep reported it (sweep.jsonl), else `objective`

    def value(self, key: str) -> str:
        """What this run used for `key`: its override, else its group choice or config value."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return str(self.choices[key])
        node: Any = self.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return "-" if node is None or isinstance(node, dict | list) else str(node)

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        points = [
            (row["step"], row[metric])
            for row in (self.evals if metric.startswith("eval/") else self.rows)
            if isinstance(row.get(metric), int | float) and math.isfinite(row[metric])
        ]
        return [p[0] for p in points], [float(p[1]) for p in points]
