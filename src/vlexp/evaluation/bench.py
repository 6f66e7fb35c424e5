"""Standard benchmarks through lmms-eval: `bench=[mathvista_testmini,mmmu_val]`.

One file per benchmark in conf/bench/ names lmms-eval's task, its data set and split and the
metric to headline. `python -m vlexp.evaluate run=RUN bench=[...]` and `train.eval_steps`
call `run`, which hands the loaded model to lmms-eval (vlexp.evaluation.bench_backend) and
calls `lmms_eval.evaluator.simple_evaluate`: lmms-eval owns the prompts and the scoring.

lmms-eval is the optional extra `bench` (pip install -e ".[bench]"); `check` says so before
anything loads. Importing this module is cheap: lmms-eval loads inside `run`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

log = logging.getLogger("vlexp")

INSTALL = 'pip install -e ".[bench]"'
SUMMARY = "summary.json"
# A benchmark's entry in conf/bench/<name>.yaml (under bench.tasks.<name>).
KEYS = ("task", "dataset", "split", "metric", "judge", "limit")


class BenchError(ValueError):
    """A benchmark that cannot run; the message names it and what to do."""


def chosen(node: Any) -> dict[str, dict[str, Any]]:
    """The benchmarks `bench=` chose (`node`: the `bench` node), by their conf/bench/ name
    (none: {})."""
    tasks = node.get("tasks") if node is not None else None
    return OmegaConf.to_container(tasks, resolve=True) if tasks else {}


def check(node: Any, family: Any) -> None:
    """Stop before any model loads: lmms-eval missing, an entry without its keys, or a
    benchmark whose data is not in the cache while the hub is offline. `node`: the `bench`
    node; `family`: the model's, resolved at start-up (`vlexp.runplan`)."""
    tasks = chosen(node)
    if not tasks:
        return
    if importlib.util.find_spec("lmms_eval") is None:
        raise BenchError(
            f"bench={','.join(tasks)} needs lmms-eval, which is not installed: {INSTALL}"
        )
    check_family(family)
    for name, spec in tasks.items():
        unknown = sorted(set(spec) - set(KEYS))
        if unknown:
            raise BenchError(
                f"bench.tasks.{name}.{unknown[0]}: not a key of a benchmark (keys: {', '.join(KEYS)})"
            )
        missing = [key for key in ("task", "metric") if not spec.get(key)]
        if missing:
            raise BenchError(
                f"bench.tasks.{name}: no {' or '.join(missing)}: each benchmark names "
                "lmms-eval's task and the metric to headline (see conf/bench/*.yaml)"
            )
    for name, spec in tasks.items():
        if spec.get("judge") and not os.environ.get(spec["judge"]):
            raise BenchError(
                f"bench={name}: lmms-eval scores {spec['task']} with an OpenAI judge and "
                f"needs {spec['judge']} set (API_TYPE=azure and AZURE_ENDPOINT for Azure); "
                "see docs/benchmarks.md"
            )
    problem = not_cached(tasks)
    if problem:
        raise BenchError(problem)


def check_family(family: Any) -> None:
    """The model's family (`vlexp.families.Family`, resolved at start-up) has an lmms-eval
    backend wired (vlexp.evaluation.bench_backend)."""
    from vlexp.evaluation.bench_backend import problem

    model_types = family.model_types
    if all(problem(t) for t in model_types):
        raise BenchError(problem(model_types[0]))


def offline() -> bool:
    """True when the Hugging Face hub may not be reached (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)."""
    flags = (os.environ.get(k, "") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def datasets_cache() -> Path:
    """The datasets cache lmms-eval loads benchmarks into (lmms_eval.api.task's own order;
    on a network filesystem lmms-eval moves to node-local scratch unless the first is set)."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    chosen = os.environ.get("LMMS_EVAL_DATASETS_CACHE") or os.environ.get("HF_DATASETS_CACHE")
    return Path(chosen or home / "datasets").expanduser()


def not_cached(tasks: dict[str, dict[str, Any]]) -> str | None:
    """Offline only: the first benchmark whose hub data set is not in lmms-eval's datasets
    cache, as one line. Offline, `datasets` 5 reads that cache and never the hub cache, so a
    repo fetched with `hf download` alone does not count: loading it once online does."""
    if not offline():
        return None
    # datasets' own lookup of a cached hub data set, the one load_dataset falls back to
    from datasets.load import CachedDatasetModuleFactory

    cache = datasets_cache()
    for name, spec in tasks.items():
        repo = spec.get("dataset")
        if not repo:  # a task of the user's own (bench.include_path) reads local files
            continue
        try:
            CachedDatasetModuleFactory(repo, cache_dir=str(cache)).get_module()
        except FileNotFoundError:
            return (
                f"bench={name}: its data set {repo} is not in lmms-eval's datasets cache "
                f"({cache}) and the hub is offline (HF_HUB_OFFLINE): load it once where there "
                f"is network, into the same cache: python -m vlexp.evaluate model=tiny "
                f"bench={name} bench.limit=1"
            )
    return None


def limits(tasks: dict[str, dict[str, Any]], default: int | None) -> dict[Any, list[str]]:
    """Benchmark names grouped by the row limit they run with (simple_evaluate takes one)."""
    groups: dict[Any, list[str]] = {}
    for name, spec in tasks.items():
        limit = spec.get("limit") if spec.get("limit") is not None else default
        groups.setdefault(limit, []).append(name)
    return groups


@functools.cache
def _task_manager(include_path: str | None, only_include_path: bool) -> Any:
    """lmms-eval's TaskManager, once per process: indexing its ~2,000 task YAMLs takes
    seconds, and train.eval_steps asks for it at every evaluation."""
    from lmms_eval.tasks import TaskManager

    return TaskManager("WARNING", include_path=include_path, include_defaults=not only_include_path)


def task_manager(node: Any) -> Any:
    """The TaskManager for `bench.include_path` / `bench.only_include_path`."""
    path = node.get("include_path")
    return _task_manager(str(path) if path else None, bool(node.get("only_include_path")))


def check_tasks(node: Any) -> None:
    """Every chosen benchmark's `task` is one lmms-eval knows (its own tasks and
    bench.include_path's): checked before the model loads."""
    known = task_manager(node).all_tasks
    unknown = {n: s["task"] for n, s in chosen(node).items() if s["task"] not in known}
    if unknown:
        name, task = next(iter(unknown.items()))
        close = difflib.get_close_matches(task, known, n=1)
        guess = f"; did you mean {close[0]}?" if close else ""
        raise BenchError(
            f"bench.tasks.{name}.task={task}: lmms-eval has no such task{guess} "
            "(`lmms-eval tasks list` shows them; bench.include_path adds your own)"
        )


def run(model: Any, processor: Any, bench: Any, model_cfg: Any, out_dir: Path) -> dict[str, Any]:
    """Evaluate `model` (configured by `model_cfg`) on the benchmarks the `bench` node chose;
    lmms-eval's results and samples files go to `out_dir`. Returns {name: its summary.json
    line (`headline`)}."""
    from vlexp.evaluation.bench_backend import backend

    check_tasks(bench)
    tasks = chosen(bench)
    lm = backend(model, processor, model_cfg, bench.get("batch_size") or 1)
    manager = task_manager(bench)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for limit, names in limits(tasks, bench.get("limit")).items():
        results = evaluate_group(
            lm, [tasks[n]["task"] for n in names], limit, bench, manager, out_dir
        )
        for name in names:
            report[name] = headline(results, name, tasks[name], limit)
    return report


def evaluate_group(
    lm: Any, task_names: list[str], limit: Any, bench: Any, manager: Any, out_dir: Path
) -> dict[str, Any]:
    """One simple_evaluate call; its results and samples saved the way lmms-eval's CLI does
    (EvaluationTracker: <date>_results.json, <date>_samples_<task>.jsonl)."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    stamp = get_datetime_str()
    tracker = EvaluationTracker(output_path=str(out_dir))
    results = simple_evaluate(
        model=lm,
        tasks=task_names,
        limit=limit,
        batch_size=bench.get("batch_size") or 1,
        gen_kwargs=bench.get("gen_kwargs"),
        task_manager=manager,
        evaluation_tracker=tracker,
        log_samples=True,
        datetime_str=stamp,
    )
    samples = results.pop("samples", {})
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=stamp)
    for task in results.get("configs", {}):
        tracker.save_results_samples(task_name=task, samples=samples[task])
    return results


def headline(results: dict[str, Any], name: str, spec: dict[str, Any], limit: Any) -> dict:
    """One benchmark's line of summary.json: its headline score and every number lmms-eval
    reported for the task (keys as `metric`, lmms-eval's `,none` filter suffix dropped)."""
    task = spec["task"]
    reported = {
        key.split(",")[0]: value
        for key, value in results["results"].get(task, {}).items()
        if "_stderr" not in key and key != "alias"
    }
    if spec["metric"] not in reported:
        raise BenchError(
            f"bench.tasks.{name}.metric={spec['metric']}: lmms-eval's {task} reported "
            f"{', '.join(reported) or 'nothing'}; name one of them"
        )
    numbers = {
        k: v for k, v in reported.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    score = numbers.get(spec["metric"])
    if score is None:  # e.g. lmms-eval's MathVista aggregation returns None for 0 correct
        log.warning(
            "bench %s: lmms-eval reported %s=%r", name, spec["metric"], reported[spec["metric"]]
        )
    samples = results.get("n-samples", {}).get(task, {})
    return {
        "task": task,
        "metric": spec["metric"],
        "score": score,
        "n": samples.get("effective"),
        "limit": limit,
        "metrics": numbers,
    }


def write_summary(out_dir: Path, meta: dict[str, Any], report: dict[str, Any]) -> Path:
    """OUT/summary.json: what was evaluated (meta) and each benchmark's line."""
    path = out_dir / SUMMARY
    path.write_text(json.dumps({**meta, "bench": report}, indent=2) + "\n", encoding="utf-8")
    return path


def into_run_summary(run_dir: Path, report: dict[str, Any]) -> None:
    """The run's own summary.json gains (or replaces) its `bench` section: final/'s scores."""
    path = run_dir / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        summary = {}  # a run stopped before writing one: the scores still belong to it
    keep = ("task", "metric", "score", "n", "limit")
    summary["bench"] = {name: {k: line[k] for k in keep} for name, line in report.items()}
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def scores(report: dict[str, Any]) -> dict[str, float]:
    """{`bench/<name>`: headline score}: the names metrics.jsonl, W&B and compare show."""
    return {
        f"bench/{name}": line["score"] for name, line in report.items() if line["score"] is not None
    }
