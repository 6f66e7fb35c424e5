"""Compare runs offline: python -m vlexp.compare RUN_OR_SWEEP_DIR... [--out DIR]

Reads only what a run dir holds (metrics.jsonl, .hydra/, config.resolved.yaml) and a sweep
dir's sweep.jsonl, so it works on copied or archived results with no server. Prints one
row per run (the overrides that differ between runs, then the final numbers) and writes
compare.md, compare.csv and compare.png (curves over steps) into --out.

    python -m vlexp.compare multirun/2026-11-22/00-10-00
    python -m vlexp.compare outputs/2026-11-22/10-00-00 outputs/2026-11-22/11-30-00 --out cmp/
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from vlexp.recipe import numbers
from vlexp.recipe.plots import plot_runs
from vlexp.recipe.sweep import SWEEP_LOG, Run, objective, read_rows, read_sweep, train_rows

# (column, metric in metrics.jsonl, how to summarise it); columns of metrics no run logged
# are left out, so a GRPO sweep shows no DPO columns and the other way round. Training
# metrics show `first -> last`, the window of the run's summary (vlexp.recipe.numbers).
COLUMNS = [
    ("reward", "reward", "first_last"),
    ("best reward", "reward", "max"),
    ("kl", "kl", "first_last"),
    ("entropy", "entropy", "first_last"),
    ("completion len", "completions/mean_length", "first_last"),
    ("margin", "rewards/margins", "first_last"),
    ("accuracy", "rewards/accuracies", "first_last"),
    ("loss", "loss", "first_last"),
    # Generation-based evaluation (vlexp.evaluate): the last of train.eval_steps, or eval/.
    # accuracy is the accuracy reward's verdict (math-verify); exact match the strict one.
    ("eval accuracy", "eval/accuracy", "last"),
    ("eval exact match", "eval/exact_match", "last"),
    ("eval reward", "eval/reward", "last"),
    ("eval format", "eval/format_rate", "last"),
    # Speed: tokens/s as the summary defines it (vlexp.recipe.numbers: the trainer's tokens
    # over train_runtime); then vlexp.recipe.perf's medians over the steps after the first.
    ("tokens/s", numbers.TOKENS, "throughput"),
    ("tokens/s/GPU", "perf/tokens_per_second_per_gpu", "median"),
    ("MFU", "perf/mfu", "median"),
    ("s/step", "timing_s/step", "median"),
    ("generate s", "timing_s/generate", "median"),
    ("logprobs s", "timing_s/logprobs", "median"),
    ("update s", "timing_s/update", "median"),
    ("peak GiB", "perf/max_memory_allocated_gb", "max"),
]


BENCH = "eval/bench/"  # benchmark scores' prefix: metrics.jsonl rows and eval/bench/summary.json


def load_run(path: Path, record: dict[str, Any] | None = None) -> Run:
    """A run dir as a Run; `record` is its sweep.jsonl line when it came from a sweep."""
    hydra_dir = path / ".hydra"
    evaluated = eval_rows(path)
    overrides = (
        _read_yaml(hydra_dir / "overrides.yaml")
        or (record or {}).get("overrides", [])
        or (evaluated[-1].get("overrides", []) if evaluated else [])  # a base-model eval
    )
    hydra_cfg = (_read_yaml(hydra_dir / "hydra.yaml") or {}).get("hydra", {})
    all_rows = read_rows(path)
    summary = [row for row in all_rows if "train_runtime" in row]
    run = Run(
        path=path,
        overrides=dict(_split_override(item) for item in overrides),
        choices={k: v for k, v in hydra_cfg.get("runtime", {}).get("choices", {}).items() if v},
        # A job that failed before training has only the composed config Hydra wrote.
        config=_read_yaml(path / "config.resolved.yaml")
        or _read_yaml(hydra_dir / "config.yaml")
        or {},
        rows=train_rows(all_rows),
        evals=[row for row in all_rows if any(k.startswith("eval/") for k in row)] + evaluated,
        status="completed" if summary else ("running or stopped" if all_rows else "no metrics"),
        wall_time_s=summary[-1]["train_runtime"] if summary else None,
        throughput=numbers.throughput(all_rows),
    )
    run.objective = objective_of(run, path, record)
    if record:
        # The whole job (loading included) when the sweep timed it, else the training loop.
        run.status = record.get("status", run.status)
        run.wall_time_s = record.get("wall_time_s") or run.wall_time_s
    return run


def objective_of(run: Run, path: Path, record: dict[str, Any] | None) -> float | None:
    """The sweep objective as the sweep reported it (sweep.jsonl); for a run outside a sweep,
    what `python -m vlexp` returned for it: vlexp.recipe.sweep.objective with the run's own
    `objective` settings (its config.resolved.yaml)."""
    if record is not None:
        return record.get("objective")
    if not run.rows:
        return None
    return objective(path, **(run.config.get("objective") or {}))


def eval_rows(path: Path) -> list[dict[str, Any]]:
    """`python -m vlexp.evaluate`'s eval/metrics.json and eval/bench/summary.json (bench=)
    as eval/* rows (after training); benchmarks as eval/bench/<name>."""
    rows = []
    for name in ("metrics.json", "bench/summary.json"):
        try:
            record = json.loads((path / "eval" / name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        row = {f"eval/{k}": v for k, v in record.items() if isinstance(v, int | float)}
        for bench, line in (record.get("bench") or {}).items():
            if line.get("score") is not None:
                row[f"eval/bench/{bench}"] = line["score"]
        rows.append({**row, "step": record.get("step"), "overrides": record.get("overrides", [])})
    return rows


def bench_columns(runs: list[Run]) -> list[tuple[str, str, str]]:
    """One column per benchmark any run was scored on (`bench=`, during or after training):
    the last score, headed by the benchmark's conf/bench/ name."""
    keys = {key for run in runs for row in run.evals for key in row if key.startswith(BENCH)}
    return [(key[len(BENCH) :], key, "last") for key in sorted(keys)]


def find_runs(dirs: list[Path]) -> list[Run]:
    """Run dirs as given; a sweep dir expands to its jobs (sweep.jsonl order, failed included)."""
    runs: list[Run] = []
    for folder in dirs:
        if not folder.is_dir():
            raise SystemExit(f"vlexp.compare: {folder} is not a directory")
        evaluated = ("eval/metrics.json", "eval/bench/summary.json")
        if any((folder / p).exists() for p in ("metrics.jsonl", ".hydra", *evaluated)):
            runs += with_results([load_run(folder)])
        elif (folder / SWEEP_LOG).is_file():
            # A sweep's failed jobs stay: their status and error are the sweep's answer.
            runs += [load_run(Path(r["run_dir"]), r) for r in read_sweep(folder)]
        else:
            found = sorted(p.parent for p in folder.rglob("metrics.jsonl"))
            if not found:
                raise SystemExit(
                    f"vlexp.compare: {folder} holds no run (no metrics.jsonl, .hydra/ or "
                    f"{SWEEP_LOG}): pass run dirs or sweep dirs"
                )
            runs += with_results([load_run(p) for p in sorted(found, key=_natural)])
    if not runs:
        raise SystemExit(
            "vlexp.compare: no run to compare: every dir given stopped before logging a metric "
            "(its app.log says why)"
        )
    return runs


def with_results(runs: list[Run]) -> list[Run]:
    """The runs that logged something; one line on stderr for each left out (a run that
    failed before training keeps its run dir, with app.log saying why, but has no row)."""
    kept = []
    for run in runs:
        if run.rows or run.evals:
            kept.append(run)
        else:
            print(
                f"vlexp.compare: skipped {run.path}: no metrics (it stopped before training; "
                f"see {run.path / 'app.log'})",
                file=sys.stderr,
            )
    return kept


def differing_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys: list[str] = []
    for run in runs:
        keys += [key for key in run.overrides if key not in keys]
    keys = [key for key in keys if not key.startswith("hydra.")]
    return [key for key in keys if len({run.value(key) for run in runs}) > 1]


def table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: run, differing overrides, status, steps, metric columns, wall time."""
    keys = differing_keys(runs)
    for run in runs:
        run.label = " ".join(f"{_short(key, keys)}={run.value(key)}" for key in keys)
    columns = [c for c in COLUMNS if any(run.series(c[1])[1] for run in runs)]
    columns += bench_columns(runs)
    objective_column = (
        [objective_header(runs)] if any(r.objective is not None for r in runs) else []
    )
    header = ["run", *keys, "status", "steps", *objective_column, *[c[0] for c in columns]]
    header.append("wall time (s)")
    body = []
    for run in runs:
        steps = [row["step"] for row in run.rows]
        cells = [_run_name(run.path), *[run.value(key) for key in keys], run.status]
        cells.append(str(max(steps)) if steps else "-")
        if objective_column:
            cells.append(_fmt(run.objective))
        cells += [cell(run, metric, how) for _, metric, how in columns]
        cells.append("-" if run.wall_time_s is None else f"{run.wall_time_s:.1f}")
        body.append(cells)
    return header, body


def objective_header(runs: list[Run]) -> str:
    """`objective (mean of last 10 reward)` when every run has the same objective settings
    (no comma: the CSV's readers may split on commas)."""
    settings = {
        (str(o.get("metric", "reward")), str(o.get("last", 10)))
        for o in (run.config.get("objective") or {} for run in runs)
    }
    if len(settings) != 1:
        return "objective"
    ((metric, last),) = settings
    return f"objective (mean of last {last} {metric})"


def cell(run: Run, metric: str, how: str) -> str:
    """One run's summary of `metric`: `first -> last` (the run summary's window), the run's
    tokens/s, or a `max`/`median`/`last` of its values."""
    if how == "throughput":
        return _fmt(run.throughput["tokens_per_s"] if run.throughput else None)
    if how == "first_last":
        values = numbers.first_last(run.rows, metric)
        return "-" if values is None else f"{_fmt(values['first'])} -> {_fmt(values['last'])}"
    values = run.series(metric)[1]
    return _fmt(summary(values, how) if values else None)


def summary(values: list[float], how: str) -> float:
    """`last`, `max`, or `median` (of the values after the first, a warm-up, when there are more)."""
    import statistics

    if how == "max":
        return max(values)
    if how == "median":
        return statistics.median(values[1:] or values)
    return values[-1]


def render_text(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_markdown(header: list[str], body: list[list[str]]) -> str:
    rows = [header, ["---"] * len(header), *body]
    return "\n".join(
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
    )


def compare(dirs: list[Path], out: Path) -> list[Path]:
    """Write compare.md, compare.csv and compare.png into `out`; print the table; return paths."""

    runs = find_runs(dirs)
    header, body = table(runs)
    print(render_text(header, body))
    out.mkdir(parents=True, exist_ok=True)
    sources = ", ".join(str(d) for d in dirs)
    (out / "compare.md").write_text(
        f"# Runs compared\n\nFrom: {sources}\n\n{render_markdown(header, body)}\n\n"
        "![curves](compare.png)\n",
        encoding="utf-8",
    )
    with (out / "compare.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *body])
    png = plot_runs(runs, out / "compare.png")
    written = [out / "compare.md", out / "compare.csv", png]
    print("wrote " + ", ".join(str(p) for p in written))
    return written


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _split_override(item: str) -> tuple[str, str]:
    key, _, value = str(item).partition("=")
    return key.lstrip("+~"), value


def _short(key: str, keys: list[str]) -> str:
    # `algo.args.beta` -> `beta` unless another differing key ends the same way.
    last = key.split(".")[-1]
    return last if sum(k.split(".")[-1] == last for k in keys) == 1 else key


def _run_name(path: Path) -> str:
    return "/".join(path.parts[-2:])


def _natural(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in path.parts)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vlexp.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs and/or sweep dirs")
    parser.add_argument("--out", type=Path, help="where to write (default: the dir given, or .)")
    args = parser.parse_args(argv)
    out = args.out or (args.dirs[0] if len(args.dirs) == 1 else Path("."))
    compare(args.dirs, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
