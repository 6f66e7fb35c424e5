"""Data: prepare (e.g. generate `shapes`), read JSONL, convert to the trainer's format."""

from __future__ import annotations

from typing import Any

from vlexp.data.records import KINDS, DataError, read_jsonl, to_example

__all__ = ["DataError", "build_datasets", "load_split"]


def load_split(path: str, kind: str, data_cfg: Any):
    """Read one JSONL split into a `datasets.Dataset` of `kind` examples (images decoded lazily)."""
    import datasets

    if kind not in KINDS:
        raise ValueError(f"algo.kind must be one of {KINDS}, got {kind!r}")
    records = read_jsonl(path, data_cfg.get("image_root"))
    template = data_cfg.get("prompt_template") or "{question}"
    system = data_cfg.get("system_prompt")
    rows = [to_example(r, kind, template, system) for r in records]
    # from_list would take the columns of the first row only and silently drop the rest.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = {key: [row.get(key) for row in rows] for key in columns}
    dataset = datasets.Dataset.from_dict(table)
    return dataset.cast_column("images", datasets.Sequence(datasets.Image()))


def build_datasets(data_cfg: Any, kind: str) -> tuple[Any, Any | None]:
    """Run the data set's `prepare` step (if any), then load the train and eval splits."""
    from hydra.utils import instantiate

    if data_cfg.get("prepare") is not None:
        instantiate(data_cfg.prepare)
    train = load_split(data_cfg.train, kind, data_cfg)
    evaluation = load_split(data_cfg.eval, kind, data_cfg) if data_cfg.get("eval") else None
    return train, evaluation
