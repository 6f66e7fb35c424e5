"""Data: prepare (e.g. generate `shapes`), read JSONL or a hub data set, check, convert to
the trainer's format."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vlexp.data.hub import to_examples
from vlexp.data.records import KINDS, DataError, Record, read_jsonl, to_example

__all__ = ["DataError", "build_datasets", "fit_loss_mask", "load_split", "to_dataset"]

log = logging.getLogger("vlexp")


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
    boxes = data_cfg.get("boxes")
    rows = [to_example(r, kind, template, system, boxes) for r in records]
    if kind == "sft":
        _one_sft_form(records, rows)
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


def _one_sft_form(records: list[Record], rows: list[dict]) -> None:
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
    `data.load` (a `_target_`, `vlexp.data.hub.load` for `data=hf`) replaces the JSONL
    reader: it returns the rows of the split named by `data.train` / `data.eval`, converted
    with the same converter (row errors raise, naming split and row).
    """
    from hydra.utils import instantiate

    if kind not in KINDS:
        raise ValueError(f"algo.kind must be one of {KINDS}, got {kind!r}")
    if data_cfg.get("prepare") is not None:
        instantiate(data_cfg.prepare)
    if data_cfg.get("load") is not None:
        load = instantiate(data_cfg.load)
        train = to_examples(load(data_cfg.train), kind, data_cfg, data_cfg.get("image_root"))
        evaluation = None
        if data_cfg.get("eval"):
            evaluation = to_examples(
                load(data_cfg.eval), kind, data_cfg, data_cfg.get("image_root")
            )
        return train, evaluation
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
