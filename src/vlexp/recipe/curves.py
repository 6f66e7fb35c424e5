"""A run's curves.png, drawn with Pillow: its headline metrics, each reward function's mean
reward and evaluation, one panel each, the logged points faint and their moving average over
them (the same panels and smoothing as before, see `vlexp.recipe.plots`).

Pillow, not matplotlib, because a run draws this figure at its end, on the path of every run:
matplotlib's import and one draw took ~0.7 s of the tiny GRPO job's ~10 s (`bench/overhead.py`),
this ~0.06 s. `python -m vlexp.compare` keeps matplotlib for compare.png, whose legends and many
runs need it and which nobody waits for at a run's end.

The figure is drawn at twice its size and scaled down (antialiased lines), in DejaVu Sans,
matplotlib's own font, when it is installed.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vlexp.recipe.plots import EVAL_PANELS, FEW_POINTS, reward_function_panels, series, smooth

SCALE = 2  # drawn at 2x, then scaled down: Pillow draws lines without antialiasing
PANEL_W, PANEL_H = 460, 330  # pixels of one panel in the written file
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 30, 42  # plot area margins within a panel
TITLE_H = 26  # the figure's title, above the panels
BLUE = (31, 119, 180)  # matplotlib's tab:blue
FAINT = (199, 221, 236)  # tab:blue at alpha 0.25 over white: the logged points
GRID, FRAME, INK = (235, 235, 235), (60, 60, 60), (30, 30, 30)


@dataclass
class Panel:
    """One panel: `metric` on the y axis, `label` above it, the points it draws."""

    metric: str
    label: str
    steps: list[int]
    values: list[float]

    def curve(self) -> list[float]:
        """The line to read: the values smoothed, or the values themselves when few."""
        return self.values if len(self.values) < FEW_POINTS else smooth(self.values)


def panels(rows: list[dict[str, Any]], metrics: list[tuple[str, str]]) -> list[Panel]:
    """The panels of a run's figure: its headline metrics, each reward function's mean reward
    (the parts of the total, so a format reward cannot pass for the task's), then evaluation;
    the metrics it logged at least one finite value of."""
    logged = {key for row in rows for key in row}
    wanted = [(m, m) for m, _ in metrics] + reward_function_panels(logged)
    wanted += [(m, m) for m, _ in EVAL_PANELS]
    found = []
    for metric, label in dict(wanted).items():
        steps, values = series(rows, metric)
        if steps:
            found.append(Panel(metric, label, steps, values))
    return found


def plot_run(
    rows: list[dict[str, Any]], metrics: list[tuple[str, str]], path: Path, title: str = ""
) -> Path | None:
    """Write the run's curves.png to `path`; None (no file) when nothing was logged."""
    shown = panels(rows, metrics)
    if not shown:
        return None
    figure(shown, title).save(path, compress_level=3)  # 6, PNG's default, takes 3x as long
    return path


def figure(shown: list[Panel], title: str = ""):
    """The figure of `shown` as a Pillow image (RGB)."""
    from PIL import Image, ImageDraw

    cols = min(3, len(shown))
    nrows = (len(shown) + cols - 1) // cols
    top = TITLE_H if title else 0
    size = (cols * PANEL_W * SCALE, (top + nrows * PANEL_H) * SCALE)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    if title:
        _text(draw, (size[0] // 2, 8 * SCALE), title, 13, anchor="mt")
    for index, panel in enumerate(shown):
        row, col = divmod(index, cols)
        origin = (col * PANEL_W * SCALE, (top + row * PANEL_H) * SCALE)
        _panel(image, draw, origin, panel)
    return image.reduce(SCALE)  # each pixel the mean of SCALE x SCALE: the antialiasing


def _panel(image, draw, origin: tuple[int, int], panel: Panel) -> None:
    x0, y0 = origin[0] + LEFT * SCALE, origin[1] + TOP * SCALE
    x1 = origin[0] + (PANEL_W - RIGHT) * SCALE
    y1 = origin[1] + (PANEL_H - BOTTOM) * SCALE
    axes = Axes((x0, y0, x1, y1), _span(panel.steps, integer=True), _span(panel.values))
    for tick in axes.x_ticks():
        x = axes.x(tick)
        draw.line([(x, y0), (x, y1)], fill=GRID, width=SCALE)
        _text(draw, (x, y1 + 5 * SCALE), _label(tick, axes.x_step), 12, anchor="mt")
    for tick in axes.y_ticks():
        y = axes.y(tick)
        draw.line([(x0, y), (x1, y)], fill=GRID, width=SCALE)
        _text(draw, (x0 - 5 * SCALE, y), _label(tick, axes.y_step), 12, anchor="rm")
    draw.rectangle([(x0, y0), (x1, y1)], outline=FRAME, width=SCALE)
    _lines(draw, axes, panel)
    _text(draw, ((x0 + x1) // 2, origin[1] + 8 * SCALE), panel.label, 15, anchor="mt")
    _text(draw, ((x0 + x1) // 2, y1 + 22 * SCALE), "step", 13, anchor="mt")
    _vertical_text(image, (origin[0] + 4 * SCALE, (y0 + y1) // 2), panel.metric, 13)


def _lines(draw, axes: Axes, panel: Panel) -> None:
    """The logged points faint, the smoothed curve over them (or the points with markers)."""
    points = [(axes.x(s), axes.y(v)) for s, v in zip(panel.steps, panel.values, strict=True)]
    curve = [(axes.x(s), axes.y(v)) for s, v in zip(panel.steps, panel.curve(), strict=True)]
    if len(points) >= FEW_POINTS:
        draw.line(points, fill=FAINT, width=SCALE, joint="curve")
    if len(curve) > 1:
        draw.line(curve, fill=BLUE, width=2 * SCALE, joint="curve")
    if len(points) < FEW_POINTS:
        r = 3 * SCALE
        for x, y in points:
            draw.ellipse([(x - r, y - r), (x + r, y + r)], fill=BLUE)


@dataclass
class Axes:
    """Data coordinates -> pixels of one plot area, and its ticks."""

    box: tuple[int, int, int, int]
    xs: tuple[float, float]
    ys: tuple[float, float]

    def __post_init__(self) -> None:
        self.x_step = max(1.0, nice_step(self.xs[1] - self.xs[0]))  # steps are whole
        self.y_step = nice_step(self.ys[1] - self.ys[0])

    def x(self, value: float) -> float:
        x0, _, x1, _ = self.box
        return x0 + (value - self.xs[0]) / (self.xs[1] - self.xs[0]) * (x1 - x0)

    def y(self, value: float) -> float:
        _, y0, _, y1 = self.box
        return y1 - (value - self.ys[0]) / (self.ys[1] - self.ys[0]) * (y1 - y0)

    def x_ticks(self) -> list[float]:
        return ticks(*self.xs, self.x_step)

    def y_ticks(self) -> list[float]:
        return ticks(*self.ys, self.y_step)


def nice_step(span: float, target: int = 6) -> float:
    """A tick step of 1, 2, 2.5 or 5 times a power of ten giving about `target` ticks."""
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def ticks(low: float, high: float, step: float) -> list[float]:
    first = math.ceil(low / step - 1e-9)
    count = math.floor(high / step + 1e-9) - first + 1
    return [round((first + i) * step, 12) for i in range(count)]


def _span(values: list[float], integer: bool = False) -> tuple[float, float]:
    """The axis range of `values`, with a margin (5% of the range) on both sides."""
    low, high = min(values), max(values)
    if high == low:  # one value: a range around it
        pad = 0.5 if integer or low == 0 else abs(low) * 0.1
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _label(value: float, step: float) -> str:
    """A tick label with as many decimals as the step has (0.25 -> 2, 5 -> 0)."""
    if abs(value) >= 1e5 or (value and abs(value) < 1e-4):
        return f"{value:.2g}"
    decimals = len(f"{step:.10f}".rstrip("0").split(".")[1])
    return f"{value:.{decimals}f}"


def _text(draw, xy: tuple[float, float], text: str, size: int, anchor: str) -> None:
    draw.text(xy, text, fill=INK, font=_font(size * SCALE), anchor=anchor)


def _vertical_text(image, center: tuple[int, int], text: str, size: int) -> None:
    """`text` read bottom to top, its left edge at center[0], centred on center[1]."""
    from PIL import Image, ImageDraw

    font = _font(size * SCALE)
    left, top, right, bottom = font.getbbox(text)
    label = Image.new("RGB", (right - left, bottom - top), "white")
    ImageDraw.Draw(label).text((-left, -top), text, fill=INK, font=font)
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (center[0], center[1] - rotated.height // 2))


@cache
def _font(size: int):
    """DejaVu Sans at `size` pixels (matplotlib's font, from its package files, without
    importing it), else Pillow's own."""
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    for root in spec.submodule_search_locations or [] if spec else []:
        path = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)
