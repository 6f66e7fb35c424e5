"""SFT/DPO data forms: prefix/suffix JSONL, `messages` records, data=hf, box rescaling."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from tests.data_forms import messages_jsonl, preference_dataset, prefix_jsonl, shapes_records
from tests.helpers import compose
from vlexp import runplan
from vlexp.data import DataError, build_datasets, load_split
from vlexp.data.boxes import rescale_boxes, resized_size


def data_cfg(overrides: list[str]):
    cfg = compose(["model=tiny", *overrides])
    runplan.of(cfg)  # start-up resolves the family, which data.boxes.family follows
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


def test_prefix_suffix_becomes_system_user_images_assistant(tmp_path, shapes_dir):
    path = prefix_jsonl(shapes_dir, tmp_path / "d" / "train.jsonl", limit=4)
    cfg = data_cfg(
        [
            "data=jsonl",
            f"data.train={path}",
            "data.system_prompt='You parse shapes.'",
            "data.prompt_template='Question: {question}'",
        ]
    )
    rows = load_split(cfg.train, "sft", cfg)
    first = shapes_records(shapes_dir, limit=1)[0]
    row = rows[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"][0]["text"] == "You parse shapes."
    user = row["prompt"][1]["content"]
    assert [p["type"] for p in user] == ["image", "text"]
    assert user[1]["text"] == f"Question: {first['prefix']}"
    assert row["completion"][0]["content"][0]["text"] == first["suffix"]
    # the relative path resolved against the JSONL's folder and decodes lazily to the image
    assert row["images"][0].size == (first["width"], first["height"])


def test_several_images_per_record(tmp_path, shapes_dir):
    records = shapes_records(shapes_dir, limit=2)
    line = {
        "image": [str(shapes_dir / r["image"]) for r in records],
        "prefix": "Compare.",
        "suffix": "ok",
    }
    path = tmp_path / "multi.jsonl"
    path.write_text(json.dumps(line) + "\n")
    cfg = data_cfg(["data=jsonl", f"data.train={path}"])
    row = load_split(cfg.train, "sft", cfg)[0]
    assert len(row["images"]) == 2
    assert [p["type"] for p in row["prompt"][-1]["content"]] == ["image", "image", "text"]


def test_messages_with_inline_qwen_images(tmp_path, shapes_dir):
    path = messages_jsonl(shapes_dir, tmp_path / "messages.jsonl", limit=3)
    cfg = data_cfg(["data=jsonl", f"data.train={path}"])
    dataset = load_split(cfg.train, "sft", cfg)
    assert set(dataset.column_names) == {"messages", "images"}
    row = dataset[0]
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    # the inline path moved to `images`, the part became a bare placeholder
    assert row["messages"][1]["content"][0]["type"] == "image"
    assert row["messages"][1]["content"][0].get("image") is None
    assert len(row["images"]) == 1 and row["images"][0].size[0] > 0
    # plain string content became one text part (uniform rows for Arrow)
    assert row["messages"][3]["content"] == [{"type": "text", "text": "Only the answer, please."}]


def test_messages_with_images_list_and_string_content_get_a_placeholder(tmp_path, shapes_dir):
    record = shapes_records(shapes_dir, limit=1)[0]
    line = {
        "images": [record["image"]],
        "messages": [
            {"role": "user", "content": record["prefix"]},
            {"role": "assistant", "content": record["suffix"]},
        ],
    }
    path = shapes_dir / "one_messages.jsonl"
    path.write_text(json.dumps(line) + "\n")
    cfg = data_cfg(["data=jsonl", f"data.train={path}"])
    row = load_split(cfg.train, "sft", cfg)[0]
    assert [p["type"] for p in row["messages"][0]["content"]] == ["image", "text"]


def test_placeholder_count_must_match_images(tmp_path, shapes_dir):
    record = shapes_records(shapes_dir, limit=1)[0]
    line = {
        "images": [record["image"], record["image"]],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": "2"},
        ],
    }
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + json.dumps(line) + "\n")
    cfg = data_cfg(["data=jsonl", f"data.train={path}", f"data.image_root={shapes_dir}"])
    with pytest.raises(DataError, match=r"bad.jsonl:2: 1 image placeholder\(s\) .* but 2 image"):
        load_split(cfg.train, "sft", cfg)


def test_sft_rejects_a_mix_of_messages_and_prefix_records(tmp_path, shapes_dir):
    path = tmp_path / "mixed.jsonl"
    prefix_jsonl(shapes_dir, tmp_path / "train.jsonl", limit=2)
    lines = (tmp_path / "train.jsonl").read_text()
    lines += json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    path.write_text(lines + "\n")
    cfg = data_cfg(["data=jsonl", f"data.train={path}"])
    with pytest.raises(
        DataError, match=r"mix the 'messages' and the prompt/completion forms.*mixed.jsonl:3"
    ):
        load_split(cfg.train, "sft", cfg)


@pytest.mark.parametrize("form", ["save_to_disk", "parquet"])
def test_hf_loader_reads_rlaif_v_formatted_pairs(tmp_path, shapes_dir, form):
    saved, parquet = preference_dataset(shapes_dir, tmp_path, limit=6)
    source = (
        [f"data.name={saved}"]
        if form == "save_to_disk"
        else ["data.name=parquet", f"data.data_files={parquet}"]
    )
    cfg = data_cfg(["data=hf", *source, "data.split='train[:4]'", "algo=dpo"])
    train, evaluation = build_datasets(cfg, "dpo")
    assert evaluation is None and len(train) == 4
    assert set(train.column_names) == {"images", "prompt", "chosen", "rejected"}
    first = shapes_records(shapes_dir, limit=1)[0]
    row = train[0]
    assert row["chosen"][0]["content"][0]["text"] == first["suffix"]
    assert row["rejected"][0]["content"][0]["text"] == first["rejected"]
    assert row["images"][0].size == (first["width"], first["height"])


def test_hf_loader_renames_columns_and_names_a_bad_one(tmp_path, shapes_dir):
    import datasets

    records = shapes_records(shapes_dir, limit=3)
    table = {
        "img": [str(shapes_dir / r["image"]) for r in records],
        "q": [r["prefix"] for r in records],
        "a": [r["suffix"] for r in records],
    }
    path = tmp_path / "qa.json"
    datasets.Dataset.from_dict(table).to_json(str(path))
    cfg = data_cfg(
        [
            "data=hf",
            "data.name=json",
            f"data.data_files={path}",
            "data.columns={img: image, q: prefix, a: suffix}",
        ]
    )
    train, _ = build_datasets(cfg, "sft")
    assert train[2]["completion"][0]["content"][0]["text"] == records[2]["suffix"]
    bad = data_cfg(
        ["data=hf", "data.name=json", f"data.data_files={path}", "data.columns={nope: prefix}"]
    )
    with pytest.raises(DataError, match=r"renames \['nope'\].*its columns: \['img', 'q', 'a'\]"):
        build_datasets(bad, "sft")


@pytest.mark.parametrize("size", [(56, 56), (224, 168), (1000, 800), (37, 2000), (3000, 29)])
def test_resized_size_matches_the_processor(tiny_model, size):
    """The rescaling target is exactly the image the processor feeds the model."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model)
    budget = processor.image_processor.size
    width, height = size
    grid = processor.image_processor(images=Image.new("RGB", size), return_tensors="pt")[
        "image_grid_thw"
    ][0]
    patch = processor.image_processor.patch_size
    expected = (int(grid[2]) * patch, int(grid[1]) * patch)
    got = resized_size(width, height, budget["shortest_edge"], budget["longest_edge"], factor=28)
    assert got == expected


def test_rescale_boxes_maps_corners_and_both_spellings():
    text = (
        "<p data-bbox='0 0 1000 800'>a</p><q data-bbox=\"500 400 1000 800\">"
        + '{"bbox_2d": [250, 200, 750, 600]}'
    )
    out = rescale_boxes(text, (1000, 800), (728, 588))
    assert out == (
        "<p data-bbox='0 0 728 588'>a</p><q data-bbox=\"364 294 728 588\">"
        + '{"bbox_2d": [182, 147, 546, 441]}'
    )
    assert rescale_boxes("no boxes here", (10, 10), (28, 28)) == "no boxes here"


def test_boxes_in_targets_are_rescaled_when_asked(tmp_path, shapes_dir):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    path = prefix_jsonl(shapes_dir, tmp_path / "doc" / "train.jsonl", limit=8, html=True)
    cfg = data_cfg(["data=jsonl", f"data.train={path}", "data.boxes.rescale=true"])
    rows = load_split(cfg.train, "sft", cfg)
    plain = load_split(cfg.train, "sft", data_cfg(["data=jsonl", f"data.train={path}"]))
    changed = resized = 0
    for record, row, before in zip(shapes_records(shapes_dir, limit=8), rows, plain, strict=True):
        h, w = smart_resize(
            record["height"], record["width"], 28, cfg.boxes.min_pixels, cfg.boxes.max_pixels
        )
        target = row["completion"][0]["content"][0]["text"]
        for shape in record["shapes"]:
            x1, y1, x2, y2 = shape["box"]
            box = [round(x1 * w / record["width"]), round(y1 * h / record["height"])]
            box += [round(x2 * w / record["width"]), round(y2 * h / record["height"])]
            assert f"data-bbox='{' '.join(map(str, box))}'" in target
        changed += target != before["completion"][0]["content"][0]["text"]
        resized += (w, h) != (record["width"], record["height"])
    # exactly the targets of resized images changed (56x56 grows, 224x168 shrinks), no other
    assert changed == resized >= 2


def test_hf_rows_with_errors_are_named_by_split_and_row(tmp_path):
    import datasets

    path = tmp_path / "bad.json"
    datasets.Dataset.from_dict({"prefix": ["a", "b"], "suffix": ["x", None]}).to_json(str(path))
    cfg = data_cfg(["data=hf", "data.name=json", f"data.data_files={path}"])
    with pytest.raises(DataError, match=r"json\[train\] row 1: 'suffix' must be a string"):
        build_datasets(cfg, "sft")
