"""Gold boxes in GRPO columns are rescaled to the frame the model answers in, so a perfect
answer scores 1 with `iou`."""

from __future__ import annotations

import dataclasses
import json

from omegaconf import OmegaConf

from tests import peer_data
from tests.helpers import compose
from vlexp.data import load_split
from vlexp.data.boxes import resized_size
from vlexp.rewards import iou


def data_cfg(*overrides: str):
    cfg = compose(["model=tiny", *overrides])
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


def rec_file(tmp_path):
    """VLM-R1 REC records: the gold box in pixels of a 1000x800 image (original size)."""
    from PIL import Image

    Image.new("RGB", (1000, 800)).save(tmp_path / "big.png")
    question = "<image>Please provide the bounding box coordinate of the region this sentence describes: the sky."
    rows = [
        {
            "id": 1,
            "image": "big.png",
            "conversations": [
                {"from": "human", "value": question},
                {"from": "gpt", "value": "[100, 40, 500, 80]"},
            ],
        },
        {
            "id": 2,
            "image": "big.png",
            "problem": question,
            "box": [0, 0, 1000, 800],
            "solution": "none",
        },
    ]
    return peer_data.write_jsonl(tmp_path / "rec.jsonl", rows)


def test_gold_boxes_follow_the_resized_image(tmp_path):
    path = rec_file(tmp_path)
    plain = load_split(str(path), "grpo", data_cfg("data=jsonl", f"data.train={path}"))
    assert plain["solution"] == ["[100, 40, 500, 80]", "none"]  # rescale off: as written
    cfg = data_cfg("data=jsonl", f"data.train={path}", "data.boxes.rescale=true")
    rows = load_split(cfg.train, "grpo", cfg)
    w, h = resized_size(1000, 800, cfg.boxes.min_pixels, cfg.boxes.max_pixels, 28)
    assert (w, h) != (1000, 800)
    expected = [
        round(100 * w / 1000),
        round(40 * h / 800),
        round(500 * w / 1000),
        round(80 * h / 800),
    ]
    assert rows["solution"] == [json.dumps(expected), "none"]
    assert json.loads(rows["box"][1]) == [0, 0, w, h]
    # the model answers in the resized image's pixels: that answer is now a perfect score
    answer = f"<answer>{expected}</answer>"
    assert iou([answer], solution=rows["solution"][:1]) == [1.0]
    assert iou([answer], solution=plain["solution"][:1])[0] < 0.5  # what it scored before


def test_a_relative_frame_family_gets_0_1000_boxes(tmp_path, monkeypatch):
    import vlexp.families as families

    relative = dataclasses.replace(families.of_tiny("qwen2_5_vl"), box_frame="relative_1000")
    monkeypatch.setattr(families, "of_model_cfg", lambda model_cfg: relative)
    path = rec_file(tmp_path)
    cfg = data_cfg("data=jsonl", f"data.train={path}", "data.boxes.rescale=true")
    rows = load_split(cfg.train, "grpo", cfg)
    assert rows["solution"][0] == json.dumps([100, 50, 500, 100])


def test_the_check_warns_when_iou_reads_unscaled_boxes(tmp_path, caplog):
    from vlexp.data import build_datasets
    from vlexp.data.check import DataCheck
    from vlexp.models.loading import load_processor

    path = rec_file(tmp_path)
    for rescale, warned in (("false", True), ("true", False)):
        cfg = compose(
            [
                "model=tiny",
                "algo=grpo",
                "reward=iou",
                "data=jsonl",
                f"data.train={path}",
                f"data.boxes.rescale={rescale}",
            ]
        )
        caplog.clear()
        with caplog.at_level("WARNING", logger="vlexp"):
            build_datasets(cfg.data, "grpo", DataCheck(cfg, load_processor(cfg.model)))
        assert ("reward iou compares gold boxes as the records give them" in caplog.text) is warned
