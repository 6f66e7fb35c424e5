"""Writes the offline W&B run that tests/unit/test_wandb_reader.py reads, and the golden output
of wandb's own reader for it. Not run by the tests; rerun by hand to re-record:

    PYTHONPATH=/tmp/wb25 python tests/data/wandb_run/make_fixture.py write   # wandb 0.25.0
    python tests/data/wandb_run/make_fixture.py golden   # a wandb whose CLI has `leet inspect`

The run is written by wandb 0.25.0 (what lmms-eval pins, and the oldest W&B writer the bench
extra brings) with what vlexp logs: a name, group and tags, a flat dotted config, `train/*`
history rows, a table with an image (an artifact) and a summary update. Host metadata and
system stats are off, so the file holds nothing about the machine that wrote it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUN_FILE = HERE / "run-fixture.wandb"


def write() -> None:
    import numpy as np
    import wandb

    with tempfile.TemporaryDirectory() as tmp:
        run = wandb.init(
            project="vlexp-tests",
            name="grpo-max_steps=2",
            group="grpo-shapes",
            tags=["grpo", "tiny", "shapes"],
            id="fixture",
            mode="offline",
            dir=tmp,
            config={
                "algo.args.beta": 0.04,
                "reward": "think_format+accuracy",
                "seed": 0,
                # as the Trainer logs a PEFT config: leet's --summary leaves empty maps out
                "peft_config": {"default": {"r": 16, "alpha_pattern": {}}},
            },
            settings=wandb.Settings(
                x_disable_stats=True, x_disable_meta=True, disable_code=True, disable_git=True
            ),
        )
        for step in (1, 2):
            row = {"train/reward": 0.25 * step, "train/kl": 0.5 / step, "train/global_step": step}
            run.log({**row, "train/grad_norm": float("nan") if step == 1 else 1.0})  # leet: "NaN"
        image = wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))
        table = wandb.Table(
            columns=["step", "completion", "image"], data=[[2, "<answer>3</answer>", image]]
        )
        run.log({"completions": table, "train/global_step": 2})
        run.summary["eval/accuracy"] = 0.5
        run.finish()
        wandb.teardown()  # the service closes the file; copied before that, it can be cut short
        (written,) = Path(tmp).rglob("offline-run-*/run-fixture.wandb")
        shutil.copyfile(written, RUN_FILE)


def golden() -> None:
    for name, extra in (("leet-inspect.jsonl", []), ("leet-inspect-summary.json", ["--summary"])):
        out = subprocess.run(
            [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *extra, str(RUN_FILE)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (HERE / name).write_text(out)


if __name__ == "__main__":
    {"write": write, "golden": golden}[sys.argv[1]]()
