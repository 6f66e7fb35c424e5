"""KTO records: labelled completions in both record forms, pairs split into two labelled rows,
and the data check naming a bad label or an empty preference by file:line."""

from __future__ import annotations

import json

import pytest

from tests.data_forms import shapes_records
from tests.helpers import compose


@pytest.fixture(scope="module")
def processor(tiny_model):
    from omegaconf import OmegaConf

    from vlexp.models.loading import load_processor

    return load_processor(
        OmegaConf.create(
            {"name_or_path": "tiny://qwen2_5_vl", "min_pixels": 3136, "max_pixels": 12544}
        )
    )


def checked(path, processor, *extra: str):
    """The KTO train set built through the data check, as `python -m vlexp algo=kto` does."""
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck

    cfg = compose(["algo=kto", "data=jsonl", f"data.train={path}", *extra])
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(cfg, processor))
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
    # `shapes` (and any DPO data) supplies KTO's labels: chosen desirable, rejected not.
    records = shapes_records(shapes_dir, limit=3)
    rows = checked(
        write(tmp_path / "train.jsonl", records), processor, f"data.image_root={shapes_dir}"
    )
    assert len(rows) == 6
    assert rows["label"] == [True, False] * 3
    for index, record in enumerate(records):
        good, bad = rows[2 * index], rows[2 * index + 1]
        assert completion_text(good) == record["suffix"]
        assert completion_text(bad) == record["rejected"]
        assert good["prompt"] == bad["prompt"]
        assert "chosen" not in good and "rejected" not in good


def test_the_shapes_data_set_feeds_kto(tmp_path):
    from vlexp.data import build_datasets

    cfg = compose(["algo=kto", "data.prepare.num_train=8", "data.prepare.num_eval=2"])
    train, evaluation = build_datasets(cfg.data, cfg.algo.kind)
    assert len(train) == 16 and len(evaluation) == 4
    assert train["label"][:4] == [True, False, True, False]


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
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(cfg, processor))
    one = single_image(train, "train")
    assert "images" not in one.column_names
    assert one[0]["image"].size == (records[0]["width"], records[0]["height"])
    assert one["solution"] == [r["solution"] for r in records]  # reward columns stay

    two = {**records[0], "image": [records[0]["image"], records[1]["image"]]}
    cfg.data.train = str(write(tmp_path / "two.jsonl", [records[1], two]))
    train, _ = build_datasets(cfg.data, cfg.algo.kind, DataCheck(cfg, processor))
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
    assert train["label"] == [True, False] * 3
    assert [completion_text(row) for row in train] == [
        text for r in records for text in (r["suffix"], r["rejected"])
    ]
    assert train[1]["images"][0].size == (records[0]["width"], records[0]["height"])
