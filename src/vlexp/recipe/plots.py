"""compare.png: one panel per metric, one line per run, labelled by its differing overrides."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vlexp.recipe.sweep import Run

# Panels in this order; metrics no run logged are left out (DPO runs have no `kl`). At most
# six keep each panel readable at the figure's size.
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
MAX_PANELS = 6
LEGEND_CHARS = 140


def plot_runs(runs: list[Run], path: Path) -> Path:
    """Write the curves of `runs` to `path` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, works over SSH and in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in PANELS if any(run.series(p[0])[0] for run in runs)][:MAX_PANELS]
    if len(panels) < 4 and any(run.series(FALLBACK[0])[0] for run in runs):
        panels.append(FALLBACK)
    if not panels:
        panels = PANELS[:1]  # an empty but valid figure that says so
    cols = 2 if len(panels) > 1 else 1
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
    fig, axes = plt.subplots(nrows, cols, figsize=(6.0 * cols, height), squeeze=False)
    colors = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    handles: dict[int, object] = {}
    for ax, (metric, title) in zip(axes.flat, panels, strict=False):
        for index, run in enumerate(runs):
            steps, values = run.series(metric)
            if not steps:
                continue
            (handles[index],) = ax.plot(
                steps,
                values,
                color=colors(index % colors.N),
                linewidth=1.6,
                marker="o" if len(steps) < 12 else None,
                markersize=3,
                label=labels[index],
            )
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if not any(run.series(metric)[0] for run in runs):
            ax.text(0.5, 0.5, "no run logged this metric", ha="center", transform=ax.transAxes)
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
