"""curves.png (`vlexp.recipe.curves`, drawn with Pillow): the panels a run's figure holds, where
its lines are drawn, and ticks as matplotlib places them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from vlexp.recipe import curves

HEADLINE = [("reward", "reward"), ("kl", "KL")]


def logged(n: int) -> list[dict]:
    rows = [
        {"step": s, "reward": float(s), "kl": 1.0 - s / n, "rewards/accuracy/mean": s / n}
        for s in range(1, n + 1)
    ]
    rows[2]["kl"] = float("nan")  # left out, not drawn at 0
    return [*rows, {"step": n, "eval/accuracy": 0.5}, {"step": n, "train_runtime": 3.0}]


def test_the_panels_are_the_headline_then_each_reward_function_then_evaluation():
    panels = curves.panels(logged(30), HEADLINE)
    assert [(p.metric, p.label) for p in panels] == [
        ("reward", "reward"),
        ("kl", "kl"),
        ("rewards/accuracy/mean", "reward: accuracy"),
        ("eval/accuracy", "eval/accuracy"),
    ]
    kl = panels[1]
    assert 3 not in kl.steps and len(kl.values) == 29 and all(map(math.isfinite, kl.values))
    assert curves.panels([{"step": 1, "train_runtime": 3.0}], HEADLINE) == []


def blue_rows(image: np.ndarray, x: int) -> list[int]:
    """Rows of column x where the smoothed (dark blue) line is."""
    column = image[:, x].astype(int)
    distance = np.abs(column - np.array(curves.BLUE)).sum(axis=1)
    return list(np.flatnonzero(distance < 60))


def test_the_line_is_drawn_where_the_values_are(tmp_path):
    path = curves.plot_run(logged(8), [("reward", "reward")], tmp_path / "c.png")
    image = np.asarray(Image.open(path).convert("RGB"))
    panel = curves.panels(logged(8), [("reward", "reward")])[0]
    assert panel.curve() == panel.values  # 8 points: drawn as they are, with markers
    top, bottom = curves.TOP, curves.PANEL_H - curves.BOTTOM
    left, right = curves.LEFT, curves.PANEL_W - curves.RIGHT
    heights = []
    for step in (1, 4, 8):  # reward = step: a straight rising line
        x = round(left + (step - 0.65) / (8.35 - 0.65) * (right - left))  # 5% margins
        rows = blue_rows(image, x)
        assert rows, f"no line at step {step}"
        heights.append(float(np.mean(rows)))
    plot_h = bottom - top
    assert heights[0] == pytest.approx(bottom - 0.05 / 1.1 * plot_h, abs=4)  # lowest value
    assert heights[2] == pytest.approx(top + 0.05 / 1.1 * plot_h, abs=4)  # highest value
    assert heights[1] == pytest.approx(heights[0] + (heights[2] - heights[0]) * 3 / 7, abs=4)


def test_a_figure_has_three_panels_a_row_and_a_title(tmp_path):
    path = curves.plot_run(logged(30), HEADLINE, tmp_path / "c.png", title="grpo: run")
    image = Image.open(path)
    image.verify()
    assert Image.open(path).size == (3 * curves.PANEL_W, curves.TITLE_H + 2 * curves.PANEL_H)


@pytest.mark.parametrize(
    "low, high",
    [
        (0.0, 1.0),
        (-0.3, 0.87),
        (15.0, 22.0),
        (0.0, 0.25),
        (1e-3, 4e-3),
        (0.9, 30.4),
        (0, 1e4),
        (0.0, 0.13),
        (2.0, 16.0),
    ],
)
def test_ticks_are_matplotlib_s(low, high):
    from matplotlib.ticker import MaxNLocator

    # The reference: matplotlib's locator with the same steps and at most 6 intervals.
    reference = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(low, high)
    inside = [t for t in reference if low - 1e-12 <= t <= high + 1e-12]
    ours = curves.ticks(low, high, curves.nice_step(high - low))
    assert ours == pytest.approx(inside)


@pytest.mark.parametrize(
    "value, step, text",
    [(0.25, 0.25, "0.25"), (5.0, 2.5, "5.0"), (20.0, 5.0, "20"), (0.1, 0.05, "0.10"),
     (2e-5, 1e-5, "2e-05"), (3e5, 1e5, "3e+05"), (0.0, 0.1, "0.0")],
)  # fmt: skip
def test_tick_labels_have_the_step_s_decimals(value, step, text):
    assert curves._label(value, step) == text
