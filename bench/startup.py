"""How fast vlexp answers: `--help`, `--cfg job`, and launch to the first optimizer step.

    python bench/startup.py               # 5 repeats each
    python bench/startup.py --repeats 10

`--help` and `--cfg job` must not import torch (target: under 1.5 s). Time to first step
launches the default experiment (`python -m vlexp`, nothing overridden but the run dir) and
stops it once metrics.jsonl holds the step-1 row, which TRL logs right after the first
optimizer step (`train.logging_steps=1` is the default). Results go to
bench/results/startup-<host>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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
    "HF_HUB_OFFLINE": "1",
}


def command_time(*args: str, cpu: list[float] | None = None) -> float:
    """Wall seconds of `python -m vlexp ARGS`; its CPU seconds (user + system) go to `cpu`."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlexp", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"python -m vlexp {' '.join(args)} failed")
    if cpu is not None:
        cpu.append(usage.ru_utime + usage.ru_stime)
    return wall


def first_step_time(run_dir: Path, timeout: float = 600) -> float:
    metrics = run_dir / "metrics.jsonl"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlexp", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - start < timeout:
            if metrics.exists() and metrics.read_text().strip():
                return time.perf_counter() - start
            if proc.poll() is not None:
                raise SystemExit(f"vlexp exited ({proc.returncode}) before its first step")
            time.sleep(0.02)
        raise SystemExit(f"no first step within {timeout} s")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()


def stats(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--first-step-repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    opts = parser.parse_args()
    command_time("--help")  # untimed: warms the page cache and .pyc files
    help_cpu: list[float] = []
    cfg_cpu: list[float] = []
    result = {
        "machine": describe(),
        "help_s": stats([command_time("--help", cpu=help_cpu) for _ in range(opts.repeats)]),
        "cfg_job_s": stats(
            [command_time("--cfg", "job", cpu=cfg_cpu) for _ in range(opts.repeats)]
        ),
    }
    # CPU seconds barely depend on other processes competing for the cores.
    result["help_cpu_s"], result["cfg_job_cpu_s"] = stats(help_cpu), stats(cfg_cpu)
    with tempfile.TemporaryDirectory(prefix="vlexp-startup-") as scratch:
        if opts.first_step_repeats:
            first_step_time(Path(scratch) / "warm")  # builds the tiny model/data cache if missing
            result["first_step_s"] = stats(
                [first_step_time(Path(scratch) / f"run{i}") for i in range(opts.first_step_repeats)]
            )
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"startup-{result['machine']['host']}.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    keys = ("help_s", "help_cpu_s", "cfg_job_s", "cfg_job_cpu_s", "first_step_s")
    for key in [k for k in keys if k in result]:
        s = result[key]
        print(f"{key:<13} median {s['median']:.2f} s  [min {s['min']:.2f}, max {s['max']:.2f}]")


if __name__ == "__main__":
    main()
