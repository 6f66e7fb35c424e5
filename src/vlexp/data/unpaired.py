"""KTO's rows: labelled completions, with each chosen/rejected pair split into two, laid out as
TRL's `unpair_preference_dataset` lays them out, so that KTO's KL estimate never pairs a prompt
with its own completion.

TRL's `unpair_preference_dataset(dataset, batch_size=N)` maps the pairs in blocks of N (1,000,
`datasets.Dataset.map`'s default, unless given) and writes, per block, every chosen completion
(label true) and then every rejected one (label false). KTO estimates its reference point
z_ref per device batch of `per_device_train_batch_size` consecutive rows (it samples
sequentially) from mismatched pairs: TRL's collator gives row k the completion of row k-1 and
the first row that of the last (`DataCollatorForVisionUnpairedPreference`,
`completions[-1:] + completions[:-1]`). Rows written pair by pair (chosen, rejected, chosen, ...)
gave every rejected row its own chosen completion as the "mismatched" one: half the estimate
was biased.

Knowing the batch B, vlexp unpairs in blocks of B/2 pairs: each batch then holds the chosen and
the rejected completions of the same B/2 prompts, desirable and undesirable rows half and
half (with blocks of 1,000, the first 62 batches of 1,000 pairs at B=8 would be desirable
only), and each row's KL completion is another prompt's. Where that layout would still give a
row its own pair's completion (B=2: one pair per block; a data set shorter than a batch; a
last block of one pair), the first of these that gives none is taken: blocks of B pairs, the
last block merged into the one before, its rejected half rotated by one or more rows.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("vlexp")

# Rows per call of `unpair_preference_dataset`'s batched map: `datasets.Dataset.map`'s default.
TRL_BLOCK = 1000
ROTATIONS = 4  # rotations of the last block's rejected half tried before giving up


def unpair(rows: list[dict], batch_size: int | None = None) -> list[dict]:
    """KTO rows from converted records: labelled rows as they are, each chosen/rejected pair
    as a desirable and an undesirable row, in TRL's block layout (see the module docstring):
    blocks of `batch_size` / 2 pairs when the per-device batch is known, else TRL's 1,000."""
    if not batch_size:
        return [row for _, row in layout(rows, TRL_BLOCK)]
    first = None
    for block in dict.fromkeys(b for b in (batch_size // 2, batch_size, TRL_BLOCK) if b > 0):
        for merge in (False, True):
            for shift in range(ROTATIONS):
                keyed = layout(rows, block, merge, shift)
                first = first or keyed
                if not own_kl_pairs([key for key, _ in keyed], batch_size):
                    return [row for _, row in keyed]
    log.warning(
        "KTO: %d record(s) cannot fill batches of %d without a row meeting its own prompt in "
        "the KL estimate; use more records or another per_device_train_batch_size",
        len(rows),
        batch_size,
    )
    return [row for _, row in first or []]


def layout(
    rows: list[dict], block: int, merge_tail: bool = False, shift: int = 0
) -> list[tuple[Any, dict]]:
    """(record key, row) in TRL's layout with blocks of `block` records; `merge_tail` joins the
    last block to the one before, `shift` rotates the last block's rejected half."""
    blocks = [rows[start : start + block] for start in range(0, len(rows), block)]
    if merge_tail and len(blocks) > 1:
        blocks[-2:] = [blocks[-2] + blocks[-1]]
    out, offset = [], 0
    for number, records in enumerate(blocks):
        out += _unpair_block(records, offset, shift if number == len(blocks) - 1 else 0)
        offset += len(records)
    return out


def _unpair_block(block: list[dict], offset: int, shift: int = 0) -> list[tuple[Any, dict]]:
    """One block: the labelled rows and chosen completions in record order, then the rejected
    completions (rotated left by `shift`), as TRL's `_unpair_row` writes a batch."""
    first, rejected = [], []
    for index, row in enumerate(block, offset):
        if "label" in row:
            first.append((("labelled", index), row))
            continue
        rest = {key: value for key, value in row.items() if key not in ("chosen", "rejected")}
        first.append((index, {**rest, "completion": row["chosen"], "label": True}))
        rejected.append((index, {**rest, "completion": row["rejected"], "label": False}))
    if rejected:
        shift %= len(rejected)
        rejected = rejected[shift:] + rejected[:shift]
    return first + rejected


def own_kl_pairs(keys: list[Any], batch_size: int) -> list[int]:
    """Rows whose KL completion (TRL: the previous row's in its batch, the first row taking the
    last's) comes from the same record; `keys` names each row's record, in order."""
    found = []
    for start in range(0, len(keys), batch_size):
        batch = keys[start : start + batch_size]
        if len(batch) > 1:
            found += [start + k for k in range(len(batch)) if batch[k] == batch[k - 1]]
    return found


# Record kinds whose trainer rows are not one per record (KTO: a pair gives two rows).
ROW_FORMS = {"kto": unpair}
