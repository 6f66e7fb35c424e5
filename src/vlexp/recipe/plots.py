"""Curves as pictures: compare.png (one line per run, `python -m vlexp.compare`), with
matplotlib. Each run's curves.png (its headline metrics, written when training ends) is drawn
with Pillow by `vlexp.recipe.curves`, on the same panels and smoothing.

Every curve is drawn twice: the logged points faint, and an exponential moving average over
them (TensorBoard's debiased smoothing) as the line to read, since one step of RL is one batch.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlexp.recipe.sweep import Run

# Panels in this order; metrics no run logged are left out (DPO runs have no `kl`).
PANELS = [
    ("reward", "mean reward"),
    ("kl", "KL to reference"),
    ("entropy", "entropy"),
    ("completions/mean_length", "completion length (tokens)"),
    ("rewards/margins", "DPO reward margin"),
    ("rewards/accuracies", "DPO preference accuracy"),
]
# Loss only fills in where fewer curves say more (DPO, SFT): GRPO's loss is ~0 by design.
FALLBACK = ("loss", "loss")
# Evaluation (train.eval_steps rows, or `vlexp.evaluate`'s eval/metrics.json) beside them.
EVAL_PANELS = [("eval/accuracy", "eval accuracy"), ("eval/reward", "eval reward")]
MAX_PANELS = 9
LEGEND_CHARS = 140
SMOOTHING = 0.75  # weight of the past in the moving average; 0 draws the raw points only
FEW_POINTS = 12  # fewer are drawn as they are, with markers: too few to smooth


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average (TensorBoard's): the first point is kept as it is,
    so a short curve is not pulled towards 0."""
    out, average, norm = [], 0.0, 0.0
    for value in values:
        average = weight * average + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append(average / norm)
    return out


def reward_function_panels(metrics: set[str]) -> list[tuple[str, str]]:
    """One panel per reward function (`rewards/<name>/mean`), each on its own axis: their
    scales differ (a format reward in [0, 1], a length penalty in tokens)."""
    from vlexp.recipe.numbers import reward_functions

    return reward_functions(metrics)


def choose_panels(logged: set[str]) -> list[tuple[str, str]]:
    """compare.png's panels for the metrics any run logged: the headline curves, then each
    reward function, then evaluation; loss when there are few."""
    panels = [p for p in PANELS if p[0] in logged]
    if len(panels) < 4 and FALLBACK[0] in logged:
        panels.append(FALLBACK)
    panels += reward_function_panels(logged)
    panels = panels[: MAX_PANELS - len([p for p in EVAL_PANELS if p[0] in logged])]
    panels += [p for p in EVAL_PANELS if p[0] in logged]
    return panels or PANELS[:1]  # an empty but valid figure that says so


def plot_runs(runs: list[Run], path: Path) -> Path:
    """Write the curves of `runs` to `path` (PNG) and return it."""
    plt = _pyplot()
    logged = {
        metric
        for run in runs
        for row in [*run.rows, *run.evals]
        for metric, value in row.items()
        if isinstance(value, int | float)
    }
    panels = choose_panels(logged)
    cols = 3 if len(panels) > 4 else (2 if len(panels) > 1 else 1)
    nrows = (len(panels) + cols - 1) // cols
    # Legend entries share the figure's width (~150 characters at this size): fewer
    # columns for long labels, and labels longer than a row wrap instead of being cut off.
    labels = [
        textwrap.fill(run.label or "/".join(run.path.parts[-2:]), LEGEND_CHARS) for run in runs
    ]
    widest = max(len(line) for label in labels for line in label.splitlines())
    legend_cols = max(1, min(4, LEGEND_CHARS // (widest + 8)))
    entry_lines = [label.count("\n") + 1 for label in labels]
    legend_rows = sum(
        max(entry_lines[i : i + legend_cols]) for i in range(0, len(labels), legend_cols)
    )
    legend_h = 0.2 * legend_rows + 0.35  # inches below the panels, so no curve is covered
    height = 3.4 * nrows + legend_h
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, height), squeeze=False)
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    handles: dict[int, object] = {}
    for ax, (metric, title) in zip(axes.flat, panels, strict=False):
        drawn = False
        for index, run in enumerate(runs):
            # A base-model evaluation or one of unknown step has no place on the step axis.
            points = [(x, y) for x, y in zip(*run.series(metric), strict=True) if x is not None]
            if not points:
                continue
            steps, values = [p[0] for p in points], [p[1] for p in points]
            line = _draw(ax, steps, values, colors(index % colors.N), labels[index])
            handles.setdefault(index, line)
            drawn = True
        _decorate(ax, metric, title, drawn)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    ordered = [handles[i] for i in sorted(handles)]
    fig.legend(
        handles=ordered,
        loc="lower center",
        ncol=min(legend_cols, max(1, len(ordered))),
        fontsize=9,
        frameon=False,
    )
    fig.tight_layout(rect=(0, legend_h / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def series(rows: list[dict[str, Any]], metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `metric`'s finite values in `rows`."""
    points = [
        (row["step"], float(row[metric]))
        for row in rows
        if isinstance(row.get(metric), int | float)
        and not isinstance(row.get(metric), bool)
        and math.isfinite(row[metric])
        and row.get("step") is not None
    ]
    return [p[0] for p in points], [p[1] for p in points]


def _draw(ax, steps: list[int], values: list[float], color, label: str):
    """Raw points faint, the smoothed curve over them; returns the line for the legend."""
    if len(steps) < FEW_POINTS:  # the points themselves are the curve
        (line,) = ax.plot(steps, values, color=color, linewidth=1.6, marker="o", markersize=3,
                          label=label)  # fmt: skip
        return line
    ax.plot(steps, values, color=color, linewidth=0.8, alpha=0.25)
    (line,) = ax.plot(steps, smooth(values), color=color, linewidth=1.8, label=label)
    return line


def _decorate(ax, metric: str, title: str, drawn: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "no run logged this metric", ha="center", transform=ax.transAxes)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, works over SSH and in CI
    import matplotlib.pyplot as plt

    return plt
