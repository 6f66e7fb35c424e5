"""Errors that stop a run on purpose, and the one line each prints.

The single-process entry (`vlexp.app`) and every rank of a multi-process run (`vlexp.worker`)
end such a run the same way: `vlexp: <message>`, exit status 1, no traceback. Cheap to
import (no torch), so the entry points can name these before anything heavy loads.
"""

from __future__ import annotations

from vlexp.data.records import DataError
from vlexp.environments import ToolsUnsupported
from vlexp.rewards.guard import RewardError


class TrainingStopped(RuntimeError):
    """Training stopped on purpose (e.g. train.on_nan=stop); the message says where and why."""


# Error class -> prefix of its one-line message.
PREFIXES: dict[type[BaseException], str] = {
    DataError: "data error: ",
    TrainingStopped: "training stopped: ",
    RewardError: "",
    ToolsUnsupported: "config error: ",
}


def message(err: BaseException) -> str | None:
    """`vlexp: ...` for an error that stops a run on purpose; None for any other error."""
    from vlexp.validate import torch_stack

    for cls, prefix in PREFIXES.items():
        if isinstance(err, cls):
            return f"vlexp: {prefix}{err}"
    # A torchvision built for another torch, failing where transformers imports it.
    return torch_stack.explain(err)
