"""`data=hf`: any data set `datasets.load_dataset` can open, converted like a JSONL file.

    python -m vlexp algo=dpo data=hf data.name=openbmb/RLAIF-V-Dataset data.split=train
    python -m vlexp algo=sft data=hf data.name=parquet data.data_files=/data/train.parquet

`data.name` is a hub id, a local folder (also one written by `Dataset.save_to_disk`), or a
builder (`json`, `parquet`, `imagefolder`) with `data.data_files`. Rows may be in any form
`vlexp.data.records` reads (prefix/suffix or conversational); `data.columns` renames columns
first (`data.columns={question: prefix, answer: suffix}`). Image columns stay undecoded
(bytes or paths) until the trainer's collator opens them, so a large set is never decoded
up front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlexp.data.records import ROW_FORMS, DataError, Record, to_example


def load(
    split: str,
    path: str,
    subset: str | None = None,
    data_files: Any = None,
    revision: str | None = None,
    columns: dict | None = None,
):
    """One split as a `datasets.Dataset`, columns renamed, image columns left undecoded."""
    import datasets

    local = Path(path).expanduser()
    if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
        loaded = datasets.load_from_disk(str(local))  # written by save_to_disk
        loaded = _pick(loaded, split, path)
    else:
        files = _plain(data_files)
        try:
            loaded = datasets.load_dataset(
                path, subset, data_files=files, revision=revision, split=split
            )
        except (FileNotFoundError, ValueError) as err:
            raise DataError(
                f"data=hf: cannot load data.name={path!r} split={split!r}: {err}"
            ) from None
    renames = _plain(columns) or {}
    missing = [c for c in renames if c not in loaded.column_names]
    if missing:
        raise DataError(
            f"data.columns renames {missing}, which {path} does not have "
            f"(its columns: {loaded.column_names})"
        )
    loaded = loaded.rename_columns(dict(renames))
    return _undecoded(loaded)


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _pick(loaded: Any, split: str, path: str):
    """The split of a saved DatasetDict (a saved single Dataset is its only split)."""
    import datasets

    dataset = loaded
    if isinstance(loaded, datasets.DatasetDict):
        name = split.split("[", 1)[0]
        if name not in loaded:
            raise DataError(f"data=hf: {path} has splits {list(loaded)}, not {name!r}")
        dataset = loaded[name]
    if "[" in split:  # datasets' slice syntax, e.g. train[:100]
        dataset = dataset.select(range(*datasets_split(split).indices(len(dataset))))
    return dataset


def datasets_split(split: str) -> slice:
    """`train[:100]` / `train[10:20]` -> slice (percentages are for load_dataset only)."""
    inner = split.split("[", 1)[1].rstrip("]")
    start, _, stop = inner.partition(":")
    return slice(int(start) if start else None, int(stop) if stop else None)


def _undecoded(dataset: Any):
    import datasets

    features = dataset.features.copy()
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            features[name] = datasets.Image(decode=False)
        elif isinstance(feature, datasets.Sequence | datasets.List) and isinstance(
            feature.feature, datasets.Image
        ):
            features[name] = datasets.List(datasets.Image(decode=False))
    return dataset.cast(features) if features != dataset.features else dataset


def _rows_as_batch(form):
    """A batched `map` function applying `form` (rows -> rows) to a batch of columns."""

    def apply(batch: dict) -> dict:
        columns = list(batch.values())
        rows = [dict(zip(batch, values, strict=True)) for values in zip(*columns, strict=True)]
        rows = form([{k: v for k, v in row.items() if v is not None} for row in rows])
        keys = list(dict.fromkeys(key for row in rows for key in row))
        return {key: [row.get(key) for row in rows] for key in keys}

    return apply


def to_examples(dataset: Any, kind: str, data_cfg: Any, image_root: str | None = None):
    """Convert every row with the JSONL converter (`to_example`), written by `map`."""
    import datasets

    template = data_cfg.get("prompt_template") or "{question}"
    system = data_cfg.get("system_prompt")
    boxes = data_cfg.get("boxes")
    image_dir = Path(image_root or ".").expanduser()
    label = f"{data_cfg.get('name')}[{getattr(dataset, 'split', None) or ''}]"

    def convert(row: dict, index: int) -> dict:
        return to_example(
            Record(f"{label} row {index}", row, image_dir), kind, template, system, boxes
        )

    converted = dataset.map(convert, with_indices=True, remove_columns=dataset.column_names)
    if kind in ROW_FORMS:  # e.g. KTO: each chosen/rejected pair becomes two labelled rows
        converted = converted.map(
            _rows_as_batch(ROW_FORMS[kind]), batched=True, remove_columns=converted.column_names
        )
    if kind == "sft" and {"messages", "prompt"} <= set(converted.column_names):
        raise DataError(f"{label}: SFT rows mix the 'messages' and prompt/completion forms")
    return converted.cast_column("images", datasets.Sequence(datasets.Image()))
