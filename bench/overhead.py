"""What vlexp costs over plain TRL: the same tiny-model job both ways, alternating.

    python bench/overhead.py                        # GRPO and SFT, 3 pairs each, 20 steps
    python bench/overhead.py --algos grpo --pairs 5 --steps 50

Each pair runs `python -m vlexp algo=<algo> train.max_steps=<steps> data.image_cache=false`
and `python bench/plain_trl.py` (the identical model, data, rewards and TRL config built by
hand), in alternating order, after one untimed warm-up of each. Per run it records the end-
to-end wall time, TRL's `train_runtime` (the training phase) and the peak RSS of the process
(`wait4`); the report gives the vlexp / plain ratios per pair: median, min and max.
Targets: training phase <= 1.05, end to end <= 1.10. The image cache is off so that the
comparison is glue against glue (bench/image_cache.py measures the cache on its own).
Results go to bench/results/overhead-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    "WANDB_MODE": "disabled",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
}


def timed(cmd: list[str], log: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak RSS in MiB) of one child process, which must succeed.

    CPU seconds (user + system, from the child's own rusage) are much less sensitive than
    wall time to other processes competing for the cores.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024  # Linux: KiB


def run_vlexp(algo: str, steps: int, out: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "vlexp",
        f"algo={algo}",
        f"train.max_steps={steps}",
        "data.image_cache=false",
        "logger=none",
        f"hydra.run.dir={out}",
    ]
    wall, cpu, rss = timed(cmd, out.with_suffix(".log"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = next(r["train_runtime"] for r in reversed(rows) if "train_runtime" in r)
    return {"wall_s": wall, "cpu_s": cpu, "train_s": float(train), "rss_mib": rss}


def run_plain(algo: str, steps: int, out: Path) -> dict:
    cmd = [
        sys.executable,
        str(REPO / "bench" / "plain_trl.py"),
        "--algo",
        algo,
        "--steps",
        str(steps),
        "--out",
        str(out),
    ]
    wall, cpu, rss = timed(cmd, out.with_suffix(".log"))
    metrics = json.loads((out / "plain_result.json").read_text())
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "train_s": float(metrics["train_runtime"]),
        "rss_mib": rss,
    }


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench(algo: str, steps: int, pairs: int, scratch: Path, warmup: bool = True) -> dict:
    if warmup:  # builds the tiny model / data caches and warms the page cache, untimed
        run_vlexp(algo, steps, scratch / f"{algo}-warm-vlexp")
        run_plain(algo, steps, scratch / f"{algo}-warm-plain")
    runs: dict[str, list[dict]] = {"vlexp": [], "plain": []}
    for i in range(pairs):
        order = ("vlexp", "plain") if i % 2 == 0 else ("plain", "vlexp")
        for who in order:
            runner = run_vlexp if who == "vlexp" else run_plain
            runs[who].append(runner(algo, steps, scratch / f"{algo}-{who}-{i}"))
            print(f"  {algo} pair {i} {who}: {runs[who][-1]}", flush=True)
    ratios = {
        key: summary([v[key] / p[key] for v, p in zip(runs["vlexp"], runs["plain"], strict=True)])
        for key in ("wall_s", "cpu_s", "train_s", "rss_mib")
    }
    return {"steps": steps, "pairs": pairs, "runs": runs, "ratio_vlexp_over_plain": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["grpo", "sft"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true", help="caches are already warm")
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    opts = parser.parse_args()
    result = {"machine": describe(), "algos": {}}
    with tempfile.TemporaryDirectory(prefix="vlexp-overhead-") as scratch:
        for algo in opts.algos:
            result["algos"][algo] = bench(
                algo, opts.steps, opts.pairs, Path(scratch), warmup=not opts.no_warmup
            )
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"overhead-{result['machine']['host']}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    for algo, res in result["algos"].items():
        r = res["ratio_vlexp_over_plain"]
        print(
            f"{algo}: vlexp/plain  training phase {r['train_s']['median']:.3f} "
            f"[{r['train_s']['min']:.3f}, {r['train_s']['max']:.3f}]  end to end "
            f"{r['wall_s']['median']:.3f} [{r['wall_s']['min']:.3f}, {r['wall_s']['max']:.3f}]  "
            f"CPU {r['cpu_s']['median']:.3f} [{r['cpu_s']['min']:.3f}, {r['cpu_s']['max']:.3f}]  "
            f"peak RSS {r['rss_mib']['median']:.3f} [{r['rss_mib']['min']:.3f}, {r['rss_mib']['max']:.3f}]"
        )


if __name__ == "__main__":
    main()
