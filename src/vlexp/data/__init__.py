"""Data: prepare (e.g. generate `shapes`), read JSONL, check, convert to the trainer's format."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlexp.data.records import KINDS, DataError, Record, read_jsonl, to_example

__all__ = ["DataError", "build_datasets", "load_split", "to_dataset"]


def to_dataset(
    records: list[Record], kind: str, data_cfg: Any, image_cache: Callable | None = None
):
    """Records -> a `datasets.Dataset` of `kind` examples (images decoded lazily).

    `image_cache` (see `data.image_cache`) swaps image paths for resized cached copies.
    """
    import datasets

    if kind not in KINDS:
        raise ValueError(f"algo.kind must be one of {KINDS}, got {kind!r}")
    template = data_cfg.get("prompt_template") or "{question}"
    system = data_cfg.get("system_prompt")
    rows = [to_example(r, kind, template, system) for r in records]
    if image_cache is not None:
        rows = image_cache(rows)
    # from_list would take the columns of the first row only and silently drop the rest.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = {key: [row.get(key) for row in rows] for key in columns}
    dataset = datasets.Dataset.from_dict(table)
    return dataset.cast_column("images", datasets.Sequence(datasets.Image()))


def load_split(path: str, kind: str, data_cfg: Any):
    """Read one JSONL split into a `datasets.Dataset` (no data check; errors raise)."""
    return to_dataset(read_jsonl(path, data_cfg.get("image_root")), kind, data_cfg)


def build_datasets(
    data_cfg: Any,
    kind: str,
    check: Callable[[dict[str, str]], dict[str, list[Record]]] | None = None,
    image_cache: Callable[[list[dict]], list[dict]] | None = None,
) -> tuple[Any, Any | None]:
    """Run the data set's `prepare` step (if any), check the records, load train and eval.

    `check` (a `vlexp.data.check.DataCheck`) gets {split: file} and returns the records to
    keep; it raises DataError, naming every bad record, under data.on_bad_record=raise.
    """
    from hydra.utils import instantiate

    if data_cfg.get("prepare") is not None:
        instantiate(data_cfg.prepare)
    files = {"train": data_cfg.train}
    if data_cfg.get("eval"):
        files["eval"] = data_cfg.eval
    if check is not None:
        records = check(files)
    else:
        records = {
            split: read_jsonl(path, data_cfg.get("image_root")) for split, path in files.items()
        }
    train = to_dataset(records["train"], kind, data_cfg, image_cache)
    evaluation = (
        to_dataset(records["eval"], kind, data_cfg, image_cache) if "eval" in records else None
    )
    return train, evaluation
