"""KTO records: labelled completions in both record forms, pairs split into two labelled rows,
and the data check naming a bad label or an empty preference by file:line."""

from __future__ import annotations

import json

import pytest

from tests.data_forms import shapes_records
from tests.helpers import compose
from vlexp import runplan
from vlexp.families import FAMILIES


@pytest.fixture(scope="module")
def processor(tiny_model):
    from omegaconf import OmegaConf

    from vlexp.models.loading import load_processor

    return load_processor(
        OmegaConf.create(
            {"name_or_path": "tiny://qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}
        ),
        FAMILIES["qwen2_5_vl"],
    )


def checked(path, processor, *extra: str, algo: str = "kto"):
    """The KTO train set built through the data check, as `python -m vlexp algo=kto` does."""
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck

    cfg = compose([f"algo={algo}", "data=jsonl", f"data.train={path}", *extra])
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(runplan.of(cfg).data, processor))
    return train


def write(path, lines: list[dict]):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def completion_text(row) -> str:
    return row["completion"][0]["content"][0]["text"]


def test_labelled_records_in_both_forms(tmp_path, shapes_dir, processor):
    first, second = shapes_records(shapes_dir, limit=2)
    image = first["image"]  # relative to data.image_root
    lines = [
        {"image": image, "prefix": first["prefix"], "suffix": first["suffix"], "label": True},
        {
            "prompt": [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}
            ],
            "completion": [{"role": "assistant", "content": "wrong"}],
            "images": [second["image"]],
            "label": False,
        },
    ]
    rows = checked(
        write(tmp_path / "train.jsonl", lines), processor, f"data.image_root={shapes_dir}"
    )
    assert rows["label"] == [True, False]
    assert [completion_text(row) for row in rows] == [first["suffix"], "wrong"]
    assert [p["type"] for p in rows[0]["prompt"][-1]["content"]] == ["image", "text"]
    assert rows[0]["images"][0].size == (first["width"], first["height"])
    assert len(rows[1]["images"]) == 1


def test_pairs_become_a_desirable_and_an_undesirable_row(tmp_path, shapes_dir, processor):
    # `shapes` (and any DPO data) supplies KTO's labels: chosen desirable, rejected not, laid
    # out as TRL's unpair_preference_dataset does: every chosen, then every rejected.
    records = shapes_records(shapes_dir, limit=3)
    rows = checked(
        write(tmp_path / "train.jsonl", records), processor, f"data.image_root={shapes_dir}"
    )
    assert len(rows) == 6
    assert rows["label"] == [True] * 3 + [False] * 3
    for index, record in enumerate(records):
        good, bad = rows[index], rows[3 + index]
        assert completion_text(good) == record["suffix"]
        assert completion_text(bad) == record["rejected"]
        assert good["prompt"] == bad["prompt"]
        assert "chosen" not in good and "rejected" not in good


def test_kto_rows_are_trls_unpair_preference_dataset_of_the_dpo_rows(
    tmp_path, shapes_dir, processor
):
    # The same pairs through algo=dpo, then TRL's own unpairing, give vlexp's KTO rows.
    from datasets import Image, Sequence
    from trl.data_utils import unpair_preference_dataset

    path = write(tmp_path / "train.jsonl", shapes_records(shapes_dir, limit=5))
    root = f"data.image_root={shapes_dir}"
    kto = checked(path, processor, root)
    dpo = checked(path, processor, root, algo="dpo")
    trl_rows = unpair_preference_dataset(dpo)
    undecoded = Sequence(Image(decode=False))
    kto, trl_rows = (d.cast_column("images", undecoded) for d in (kto, trl_rows))
    assert sorted(kto.column_names) == sorted(trl_rows.column_names)
    assert kto.to_list() == trl_rows.to_list()


def test_the_shapes_data_set_feeds_kto(tmp_path):
    from vlexp.data import build_datasets

    cfg = compose(["algo=kto", "data.prepare.num_train=8", "data.prepare.num_eval=2"])
    train, evaluation = build_datasets(cfg.data, cfg.algo.kind)
    assert len(train) == 16 and len(evaluation) == 4
    assert train["label"] == [True] * 8 + [False] * 8


def test_bad_labels_and_empty_preferences_are_named(tmp_path, shapes_dir, processor):
    from vlexp.data.records import DataError

    record = shapes_records(shapes_dir, limit=1)[0]
    image = record["image"]
    lines = [
        {"image": image, "prefix": "Q?", "suffix": "A", "label": "yes"},
        {"image": image, "prefix": "Q?", "suffix": "A", "rejected": "A"},
        {"image": image, "prefix": "Q?", "label": True},
        {"image": image, "prefix": "Q?", "suffix": "fine", "label": True},
    ]
    path = write(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError) as caught:
        checked(path, processor, f"data.image_root={shapes_dir}")
    message = str(caught.value)
    assert message.startswith("3 bad record(s)")
    assert f"{path}:1" in message and "'label' must be true" in message
    assert f"{path}:2" in message and "chosen and rejected are identical" in message
    assert f"{path}:3" in message and "'suffix' must be a string" in message
    assert f"{path}:4" not in message


def test_one_image_algorithms_get_an_image_column_or_stop(tmp_path, shapes_dir, processor):
    from vlexp.data import build_datasets, single_image
    from vlexp.data.check import DataCheck
    from vlexp.data.records import DataError

    records = shapes_records(shapes_dir, limit=2)
    cfg = compose(["algo=online_dpo", "data=jsonl", f"data.image_root={shapes_dir}"])
    cfg.data.train = str(write(tmp_path / "train.jsonl", records))
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(runplan.of(cfg).data, processor))
    one = single_image(train, "train")
    assert "images" not in one.column_names
    assert one[0]["image"].size == (records[0]["width"], records[0]["height"])
    assert one["solution"] == [r["solution"] for r in records]  # reward columns stay

    two = {**records[0], "image": [records[0]["image"], records[1]["image"]]}
    cfg.data.train = str(write(tmp_path / "two.jsonl", [records[1], two]))
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(runplan.of(cfg).data, processor))
    with pytest.raises(DataError, match=r"exactly one image per prompt.*row 1 has 2"):
        single_image(train, "train")


def test_hub_pairs_feed_kto_as_labelled_rows(tmp_path, shapes_dir):
    from omegaconf import OmegaConf

    from tests.data_forms import preference_dataset
    from vlexp.data import build_datasets

    saved, _ = preference_dataset(shapes_dir, tmp_path, limit=3)
    cfg = compose(["algo=kto", "data=hf", f"data.name={saved}"])
    data = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    train, _ = build_datasets(data, "kto")
    records = shapes_records(shapes_dir, limit=3)
    assert train["label"] == [True] * 3 + [False] * 3
    assert [completion_text(row) for row in train] == [r["suffix"] for r in records] + [
        r["rejected"] for r in records
    ]
    assert train[3]["images"][0].size == (records[0]["width"], records[0]["height"])


def text_pairs(count: int) -> list[dict]:
    """Conversational preference pairs whose texts name their pair (no images)."""
    return [
        {
            "prompt": [{"role": "user", "content": f"question {i}"}],
            "chosen": [{"role": "assistant", "content": f"good {i}"}],
            "rejected": [{"role": "assistant", "content": f"bad {i}"}],
            "images": [],
        }
        for i in range(count)
    ]


def trl_unpaired(pairs: list[dict], block: int | None = None) -> list[dict]:
    """TRL's own unpairing (`batch_size`: the pairs per block of its batched map)."""
    from datasets import Dataset
    from trl.data_utils import unpair_preference_dataset

    blocks = {"batch_size": block} if block else {}
    return unpair_preference_dataset(Dataset.from_list(pairs), **blocks).to_list()


def pair_of(text: str) -> int:
    return int(text.split()[-1])


def own_kl_rows(rows: list[dict], batch: int, processor) -> list[int]:
    """Rows whose KL completion, as TRL's own collator builds it for KTO (each batch of
    `batch` consecutive rows: KTO samples sequentially), comes from the row's own pair."""
    import copy

    from torch.utils.data import DataLoader
    from trl.trainer.kto_trainer import DataCollatorForVisionUnpairedPreference

    collator = DataCollatorForVisionUnpairedPreference(processor, calculate_kl=True)
    loader = DataLoader(copy.deepcopy(rows), batch_size=batch, collate_fn=collator)
    found, index = [], 0
    for out in loader:
        for ids, mask in zip(out["KL_input_ids"], out["KL_completion_mask"], strict=True):
            completion = processor.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            if pair_of(completion.strip()) == pair_of(rows[index]["prompt"][0]["content"]):
                found.append(index)
            index += 1
    assert index == len(rows)
    return found


@pytest.mark.parametrize("pairs", [3, 1000, 2500])
def test_without_a_batch_size_the_layout_is_trls(pairs):
    from vlexp.data.unpaired import unpair

    rows = text_pairs(pairs)
    assert unpair(rows) == trl_unpaired(rows)


@pytest.mark.parametrize(
    ("pairs", "batch"),
    [(p, b) for p in (2, 3, 5, 7, 8, 13) for b in (2, 4, 8)],
)
def test_kl_pairs_never_match_a_prompt_with_its_own_completion(pairs, batch, processor):
    # KTO's reference point is estimated from mismatched (prompt, completion) pairs: TRL's
    # collator builds them, and a row meeting its own pair's other completion biases it.
    # Knowing the batch, vlexp's layout is TRL's unpair_preference_dataset in blocks of half
    # a batch wherever that is free of such rows; where it is not (batch 2: one pair per
    # block; 3 pairs at batch 4: the last block is one pair), vlexp's still is.
    from vlexp.data.unpaired import unpair

    rows = text_pairs(pairs)
    ours = unpair(rows, batch)
    assert own_kl_rows(ours, batch, processor) == []
    assert sorted(map(str, ours)) == sorted(map(str, trl_unpaired(rows)))  # the same rows
    reference = trl_unpaired(rows, batch // 2)
    if not own_kl_rows(reference, batch, processor):
        assert ours == reference


@pytest.mark.parametrize("batch", [4, 8, 16])
def test_each_batch_holds_as_many_desirable_as_undesirable_rows(batch):
    # TRL's default blocks of 1,000 pairs would make the first 1,000 rows desirable only
    # (125 batches of 8, in KTO's sequential order); blocks of half a batch mix them.
    from vlexp.data.unpaired import unpair

    rows = unpair(text_pairs(5 * batch), batch)
    batches = [rows[start : start + batch] for start in range(0, len(rows), batch)]
    assert all(sum(row["label"] for row in b) == batch // 2 for b in batches)
    assert trl_unpaired(text_pairs(1000))[999]["label"] is True


def test_the_data_path_lays_kto_out_for_the_run_batch(tmp_path, shapes_dir, processor):
    # 7 pairs at batch 8, through the data check as `python -m vlexp algo=kto` builds them:
    # TRL's layout would give the first row the last row's completion, its own rejected one.
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck

    records = shapes_records(shapes_dir, limit=7)
    path = write(tmp_path / "train.jsonl", records)
    cfg = compose(["algo=kto", "data=jsonl", f"data.train={path}", f"data.image_root={shapes_dir}"])
    train, _ = build_datasets(
        cfg.data, "kto", DataCheck(runplan.of(cfg).data, processor), batch_sizes={"train": 8}
    )
    suffixes = {r["suffix"]: i for i, r in enumerate(records)}
    rejected = {r["rejected"]: i for i, r in enumerate(records)}
    pair = [suffixes.get(completion_text(row), rejected.get(completion_text(row))) for row in train]
    batches = [pair[start : start + 8] for start in range(0, len(pair), 8)]
    # TRL's collator gives row k the completion of row k-1 (row 0: the last row's).
    assert all(b[k] != b[k - 1] for b in batches for k in range(len(b)))
