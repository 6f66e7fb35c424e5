"""The embedded default learns the task, not only the format (issue 25; NOT met yet).

Run as a user runs it: `python -m vlexp`, then `python -m vlexp.evaluate run=<run dir>` and
`python -m vlexp.evaluate model=tiny data=shapes` (the model before training). The goals are
the issue's: the accuracy reward's mean over the last 10 logged steps at least 0.3 above the
first 10, and evaluation accuracy after training at least 0.25 above before. Today's default
(tiny v1, shapes v1) gives 0.075 -> 0.113 and 0.219 -> 0.219: strict xfail, so the test
turns red the day the goals hold and the marker must go. A redesign (shapes v2: colour
questions about one large shape; a two-stage warm-up with a stock-answer teacher) reached
eval 0.344 -> 0.688 on four seeds but a training rise of only +0.24 on the default seed, and
changed the starting point of every other learning test; it was not merged.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, read_metrics, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.xfail(strict=True, reason="issue 25: the default does not learn the task yet"),
]

WINDOW = 10  # logged steps at each end of the run (the summary's first/last window)
RISE = 0.3  # the goal


def evaluate(*args: str) -> dict:
    """`python -m vlexp.evaluate ARGS` in a fresh interpreter; its metrics.json."""
    result = subprocess.run(
        [sys.executable, "-m", "vlexp.evaluate", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = result.stdout.rsplit("-> ", 1)[1].strip()
    return json.loads((REPO / out_dir / "metrics.json").read_text())


def window_means(rows: list[dict], name: str) -> tuple[float, float]:
    values = [row[name] for row in rows if name in row]
    assert len(values) >= 2 * WINDOW, f"only {len(values)} logged values of {name}"
    return sum(values[:WINDOW]) / WINDOW, sum(values[-WINDOW:]) / WINDOW


def test_the_default_run_learns_the_task(tmp_path, tiny_model):
    run_dir = tmp_path / "run"
    result = run_cli(f"hydra.run.dir={run_dir}")  # the embedded default, nothing else
    assert result.returncode == 0, result.stderr[-3000:]

    first, last = window_means(read_metrics(run_dir), "rewards/accuracy/mean")
    trained = evaluate(f"run={run_dir}")
    untrained = evaluate("model=tiny", "data=shapes", f"hydra.run.dir={tmp_path / 'base'}")
    numbers = (
        f"rewards/accuracy/mean: first {WINDOW} {first:.3f} -> last {WINDOW} {last:.3f}; "
        f"eval accuracy: untrained {untrained['accuracy']:.3f} -> trained {trained['accuracy']:.3f}"
    )
    print(numbers)
    assert trained["num_prompts"] == untrained["num_prompts"] == 64
    # Both goals, with both numbers in the message whichever fails.
    assert last >= first + RISE, numbers
    assert trained["accuracy"] >= untrained["accuracy"] + 0.25, numbers
