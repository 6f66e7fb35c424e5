"""Data: prepare (e.g. generate `shapes`), read any source in any known format, check, convert
to the trainer's format."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vlexp.data import schema
from vlexp.data.records import DataError, Record, convert, prompting
from vlexp.data.sources import Reader
from vlexp.data.unpaired import ROW_FORMS

__all__ = [
    "DataError",
    "build_datasets",
    "fit_loss_mask",
    "load_split",
    "split_sources",
    "to_dataset",
]

log = logging.getLogger("vlexp")


def to_dataset(
    records: list[Record],
    kind: str,
    data_cfg: Any,
    image_cache: Callable | None = None,
    batch_size: int | None = None,
):
    """Records -> a `datasets.Dataset` of `kind` examples (images decoded lazily).

    `image_cache` (see `data.image_cache`) swaps image paths for resized cached copies.
    `batch_size`, the per-device batch the rows will be cut into, lets KTO lay its rows out so
    that no KL pair matches a prompt with its own completion (`vlexp.data.unpaired`).
    """
    import datasets

    spec = schema.of(kind)
    # The examples the data check already made (records.convert converts each record once).
    settings = prompting(data_cfg)
    rows = [convert(r, kind, settings) for r in records]
    if spec.one_form:
        _one_form(records, rows)
    if kind in ROW_FORMS:
        rows = ROW_FORMS[kind](rows, batch_size)
    if any("videos" in row for row in rows):
        # One column for the whole set: image-only rows of a mixed set have no videos.
        rows = [row if "videos" in row else {**row, "videos": []} for row in rows]
    if image_cache is not None:
        rows = image_cache(rows)
    # from_list would take the columns of the first row only and silently drop the rest.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = {key: [row.get(key) for row in rows] for key in columns}
    dataset = datasets.Dataset.from_dict(table)
    return dataset.cast_column("images", datasets.Sequence(datasets.Image()))


def single_image(dataset: Any, split: str):
    """The rows with their one image in an `image` column (trainers that read one image per
    prompt, e.g. TRL's OnlineDPOTrainer); a row with another count stops the run."""
    if dataset is None:
        return None
    counts = [len(images or []) for images in dataset["images"]]
    wrong = [index for index, count in enumerate(counts) if count != 1]
    if wrong:
        shown = ", ".join(f"row {i} has {counts[i]}" for i in wrong[:5])
        raise DataError(
            f"data.{split}: this algorithm (algo.one_image) takes exactly one image per prompt, "
            f"but {len(wrong)} row(s) differ ({shown}): keep one image per record"
        )
    import datasets

    # Undecoded (path/bytes) entries move to the new column, which decodes them lazily again.
    undecoded = dataset.cast_column("images", datasets.Sequence(datasets.Image(decode=False)))
    one = undecoded.map(lambda row: {"image": row["images"][0]}, remove_columns=["images"])
    return one.cast_column("image", datasets.Image())


def _one_form(records: list[Record], rows: list[dict]) -> None:
    # TRL masks `messages` rows by assistant turns and prompt/completion rows by the
    # completion, one way per data set: a mix would train on the wrong tokens for one half.
    forms: dict[str, str] = {}
    for record, row in zip(records, rows, strict=True):
        forms.setdefault("messages" if "messages" in row else "prompt/completion", record.source)
    if len(forms) > 1:
        where = "; ".join(f"{form} at {source}" for form, source in forms.items())
        raise DataError(
            f"SFT records mix the 'messages' and the prompt/completion forms ({where}): "
            "write every record of a split in one form"
        )


def load_split(path: str, kind: str, data_cfg: Any):
    """Read one split (a file, a folder, a dataset_info.json name) into a `datasets.Dataset`
    (no data check; errors raise)."""
    return to_dataset(Reader(data_cfg).read(path), kind, data_cfg)


def build_datasets(
    data_cfg: Any,
    kind: str,
    check: Callable[[dict[str, Any]], dict[str, list[Record]]] | None = None,
    image_cache: Callable[[list[dict]], list[dict]] | None = None,
    batch_sizes: dict[str, int] | None = None,
) -> tuple[Any, Any | None]:
    """Run the data set's `prepare` step (if any), read, check and convert train and eval.

    Every source goes the same way: its records (`vlexp.data.sources`), the check, then
    `to_dataset`. `check` (a `vlexp.data.check.DataCheck`) gets {split: file or records} and
    returns the records to keep; it raises DataError, naming every bad record, under
    data.on_bad_record=raise. `batch_sizes` ({split: per-device batch}) reach `to_dataset`. `data.load` (a `_target_`, `vlexp.data.hub.load` for `data=hf`)
    replaces the files: it returns the rows of the split named by `data.train` / `data.eval`.
    """
    from hydra.utils import instantiate

    schema.of(kind)  # an unknown kind fails here, before the prepare step
    if data_cfg.get("prepare") is not None:
        instantiate(data_cfg.prepare)
    splits = ("train", "eval") if data_cfg.get("eval") else ("train",)
    sources = split_sources(data_cfg, splits)
    if check is not None:
        records = check(sources)
    else:
        records = {
            split: source if isinstance(source, list) else Reader(data_cfg).read(source)
            for split, source in sources.items()
        }
    sizes = batch_sizes or {}
    train = to_dataset(records["train"], kind, data_cfg, image_cache, sizes.get("train"))
    evaluation = (
        to_dataset(records["eval"], kind, data_cfg, image_cache, sizes.get("eval"))
        if "eval" in records
        else None
    )
    return train, evaluation


def split_sources(data_cfg: Any, splits: tuple[str, ...]) -> dict[str, Any]:
    """{split: its file (path) or, with `data.load` (data=hf), its rows read as records}."""
    from hydra.utils import instantiate

    sources = {split: data_cfg.get(split) for split in splits}
    if data_cfg.get("load") is None:
        return sources
    load, reader = instantiate(data_cfg.load), Reader(data_cfg)
    return {
        split: reader.rows(load(name), f"{data_cfg.get('name')}[{name}]")
        for split, name in sources.items()
    }


def fit_loss_mask(args: Any, train_set: Any) -> None:
    """Keep the one SFT loss mask TRL supports for this data set's form (SFT args only).

    algo=sft asks for both `completion_only_loss` (prompt/completion rows: loss on the
    completion) and `assistant_only_loss` (`messages` rows: loss on the assistant turns, via
    TRL's `{% generation %}` training template). TRL rejects each on the other form, so the
    one that does not apply is switched off here; either way prompt, system, image pad and
    padding tokens are masked.
    """
    if not hasattr(args, "assistant_only_loss") or not hasattr(args, "completion_only_loss"):
        return
    if "messages" in train_set.column_names:
        if args.completion_only_loss:
            args.completion_only_loss = False
        log.info(
            "SFT loss: assistant turns only (assistant_only_loss=%s)", args.assistant_only_loss
        )
    else:
        args.assistant_only_loss = False
        log.info("SFT loss: completion only (completion_only_loss=%s)", args.completion_only_loss)
