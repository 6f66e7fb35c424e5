"""The data part of a run plan: what the data pipeline and its check read of a run.

Built once at start-up by `vlexp.runplan.of` from the composed config, so the data check,
the length limits, the video budget, the image cache and the box frames read the same
values and never the root config (nor resolve the model family again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlexp.config.algo import Algorithm
from vlexp.data.videos import Budget
from vlexp.families import Family


@dataclass(frozen=True)
class DataSpec:
    """The `data` node and the facts of the rest of the run that the data side needs."""

    # The `data` node as composed: sources, format, columns, prompt, boxes, check settings
    # (each reader takes the keys it owns from it).
    node: Any
    # The record format (`kind`), whether rewards score completions, the length budgets.
    algorithm: Algorithm
    # Image and video token costs, the box frame, the video patch size.
    family: Family
    # `data.video` with the family's patch size.
    video: Budget
    # `reward.funcs`: the data columns the rewards read (`vlexp.config.reward.columns_of`).
    reward_funcs: Any
    # Root of vlexp's caches (`cache_dir`): resized images, 8-bit copies, remote images.
    cache_dir: Path
    # The model as configured: its name in messages, where its config.json is (the context
    # length), `trust_remote_code` for that config.
    model_name: str
    model_path: str
    trust_remote_code: bool
    # `seed`: the data check's sample of images.
    seed: int = 0
