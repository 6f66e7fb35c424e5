"""Rewards: the functions (TRL's signature, `vlexp.rewards.<name>` as `_target_`), the guard
that names a failing reward, and the one reader of the `reward` config node."""

from vlexp.rewards import answers, guard
from vlexp.rewards.library import (
    accuracy,
    box_iou,
    choice,
    completion_text,
    extract_answer,
    iou,
    length,
    named_labels,
    parse_box,
    think_format,
)

__all__ = [
    "accuracy",
    "answers",
    "box_iou",
    "choice",
    "completion_text",
    "extract_answer",
    "guard",
    "iou",
    "length",
    "named_labels",
    "parse_box",
    "think_format",
]
