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


def test_iou_scores_a_perfect_answer_whether_or_not_the_loader_rescales(tmp_path):
    """Gold boxes in original pixels (rescale off): the reward maps the answer from the
    family's frame; rescaled gold boxes (rescale on) are already in that frame: compared as
    they are. Either way the model's perfect answer scores 1 and a box in the wrong frame not."""
    from PIL import Image

    from vlexp.rewards.guard import guarded

    path = rec_file(tmp_path)
    image = Image.open(tmp_path / "big.png")
    for rescale in ("false", "true"):
        cfg = compose(
            ["model=tiny", "algo=grpo", "reward=iou", "data=jsonl", f"data.train={path}"]
            + [f"data.boxes.rescale={rescale}"]
        )
        rows = load_split(str(path), "grpo", data_cfg(*cfg_overrides(path, rescale)))
        w, h = resized_size(1000, 800, cfg.data.boxes.min_pixels, cfg.data.boxes.max_pixels, 28)
        perfect = [
            round(100 * w / 1000),
            round(40 * h / 800),
            round(500 * w / 1000),
            round(80 * h / 800),
        ]
        reward = guarded(cfg)["iou"]
        scores = reward(
            [f"<answer>{perfect}</answer>", "<answer>[100, 40, 500, 80]</answer>"],
            solution=rows["solution"][:1] * 2,
            images=[[image], [image]],
        )
        # The tiny pixel budget resizes 1000x800 to ~125x100 px: whole pixels there are 8 px
        # here, so the mapped perfect answer overlaps the gold box by less than 1.
        assert scores[0] > 0.8, (rescale, scores)
        assert scores[1] < 0.5, (rescale, scores)  # original pixels: not what the model sees


def cfg_overrides(path, rescale: str) -> list[str]:
    return ["data=jsonl", f"data.train={path}", f"data.boxes.rescale={rescale}"]
